//! The outcome measures as data: PHQ-9, GAD-7 and CORE-10, their items
//! (English, verbatim from the instruments), answer scales, scoring and
//! severity bands, and each as a FHIR R4 `Questionnaire`.
//!
//! Licences: PHQ-9 and GAD-7 were developed by Drs. Spitzer, Williams, Kroenke
//! and colleagues with an educational grant from Pfizer Inc.; no permission is
//! required to reproduce, translate, display or distribute them. CORE-10 is
//! copyright the CORE System Trust; it is free to use and copy, but must not be
//! changed (so the item texts here are exact, and there is no Finnish wording
//! of our own: a translation of a validated instrument is not ours to make).

use serde_json::{Value, json};

/// The code system of Confidant's own codes (CORE-10 has no LOINC code).
pub const MEASURES_SYSTEM: &str = "urn:confidant:measures";
/// The canonical URL base of the built-in questionnaires.
pub const QUESTIONNAIRE_BASE: &str = "urn:confidant:questionnaire";
/// The tag on a score whose risk item was answered above 0, until a clinician acknowledges it.
pub const NEEDS_ATTENTION: &str = "needs-attention";
/// The tag the acknowledgement puts in its place.
pub const ACKNOWLEDGED: &str = "acknowledged";
const LOINC: &str = "http://loinc.org";

/// A severity band: `from..=to` of the total, with its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Band {
    pub from: u8,
    pub to: u8,
    /// English name; the pages translate it.
    pub name: &'static str,
    /// A stable code (`minimal`, `mild`, ...), also the CSS class of its shading.
    pub code: &'static str,
}

/// One outcome measure.
#[derive(Debug)]
pub struct Instrument {
    /// The Questionnaire id and the name on the pages: `phq-9`, `gad-7`, `core-10`.
    pub id: &'static str,
    pub title: &'static str,
    /// What the respondent is asked before the items.
    pub stem: &'static str,
    pub items: &'static [&'static str],
    /// Answer labels; the value of each is its index.
    pub options: &'static [&'static str],
    /// Items (1-based) whose score is reversed (`max - value`).
    pub reversed: &'static [usize],
    /// An item (1-based) about self-harm: an answer above 0 is flagged to the clinician at once.
    pub risk_item: Option<usize>,
    pub bands: &'static [Band],
    /// The score's code: (system, code, display).
    pub code: (&'static str, &'static str, &'static str),
    /// The licence, as the Questionnaire's `copyright`.
    pub copyright: &'static str,
}

const FREQUENCY: &[&str] = &["Not at all", "Several days", "More than half the days", "Nearly every day"];

pub static PHQ9: Instrument = Instrument {
    id: "phq-9",
    title: "PHQ-9",
    stem: "Over the last 2 weeks, how often have you been bothered by any of the following problems?",
    items: &[
        "Little interest or pleasure in doing things",
        "Feeling down, depressed, or hopeless",
        "Trouble falling or staying asleep, or sleeping too much",
        "Feeling tired or having little energy",
        "Poor appetite or overeating",
        "Feeling bad about yourself — or that you are a failure or have let yourself or your family down",
        "Trouble concentrating on things, such as reading the newspaper or watching television",
        "Moving or speaking so slowly that other people could have noticed? Or the opposite — being so fidgety \
         or restless that you have been moving around a lot more than usual",
        "Thoughts that you would be better off dead or of hurting yourself in some way",
    ],
    options: FREQUENCY,
    reversed: &[],
    risk_item: Some(9),
    bands: &[
        Band { from: 0, to: 4, name: "minimal", code: "minimal" },
        Band { from: 5, to: 9, name: "mild", code: "mild" },
        Band { from: 10, to: 14, name: "moderate", code: "moderate" },
        Band { from: 15, to: 19, name: "moderately severe", code: "moderately-severe" },
        Band { from: 20, to: 27, name: "severe", code: "severe" },
    ],
    code: (LOINC, "44261-6", "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]"),
    copyright: "PHQ-9: developed by Drs. Robert L. Spitzer, Janet B.W. Williams, Kurt Kroenke and colleagues, \
                with an educational grant from Pfizer Inc. No permission required to reproduce, translate, \
                display or distribute.",
};

pub static GAD7: Instrument = Instrument {
    id: "gad-7",
    title: "GAD-7",
    stem: "Over the last 2 weeks, how often have you been bothered by the following problems?",
    items: &[
        "Feeling nervous, anxious, or on edge",
        "Not being able to stop or control worrying",
        "Worrying too much about different things",
        "Trouble relaxing",
        "Being so restless that it is hard to sit still",
        "Becoming easily annoyed or irritable",
        "Feeling afraid, as if something awful might happen",
    ],
    options: FREQUENCY,
    reversed: &[],
    risk_item: None,
    bands: &[
        Band { from: 0, to: 4, name: "minimal", code: "minimal" },
        Band { from: 5, to: 9, name: "mild", code: "mild" },
        Band { from: 10, to: 14, name: "moderate", code: "moderate" },
        Band { from: 15, to: 21, name: "severe", code: "severe" },
    ],
    code: (LOINC, "70274-6", "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]"),
    copyright: "GAD-7: developed by Drs. Robert L. Spitzer, Janet B.W. Williams, Kurt Kroenke and colleagues, \
                with an educational grant from Pfizer Inc. No permission required to reproduce, translate, \
                display or distribute.",
};

pub static CORE10: Instrument = Instrument {
    id: "core-10",
    title: "CORE-10",
    stem: "This form has 10 statements about how you have been OVER THE LAST WEEK. Please read each statement \
           and think how often you felt that way last week.",
    items: &[
        "I have felt tense, anxious or nervous",
        "I have felt I have someone to turn to for support when needed",
        "I have felt able to cope when things go wrong",
        "Talking to people has felt too much for me",
        "I have felt panic or terror",
        "I made plans to end my life",
        "I have had difficulty getting to sleep or staying asleep",
        "I have felt despairing or hopeless",
        "I have felt unhappy",
        "Unwanted images or memories have been distressing me",
    ],
    options: &["Not at all", "Only occasionally", "Sometimes", "Often", "Most or all of the time"],
    // The two positively worded items.
    reversed: &[2, 3],
    // "I made plans to end my life".
    risk_item: Some(6),
    bands: &[
        Band { from: 0, to: 5, name: "healthy", code: "healthy" },
        Band { from: 6, to: 10, name: "low level", code: "low" },
        Band { from: 11, to: 14, name: "mild", code: "mild" },
        Band { from: 15, to: 19, name: "moderate", code: "moderate" },
        Band { from: 20, to: 24, name: "moderate to severe", code: "moderately-severe" },
        Band { from: 25, to: 40, name: "severe", code: "severe" },
    ],
    code: (MEASURES_SYSTEM, "core-10-total", "CORE-10 clinical score (total, 0-40)"),
    copyright: "CORE-10: copyright CORE System Trust. Free to use and copy; it must not be changed.",
};

/// Every built-in instrument.
pub static INSTRUMENTS: [&Instrument; 3] = [&PHQ9, &GAD7, &CORE10];

/// A completed instrument's score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    pub total: u8,
    pub band: Band,
    /// The risk item's answer, when it is above 0.
    pub risk: Option<u8>,
}

impl Instrument {
    /// The instrument with this id (`phq-9`), or its canonical URL.
    pub fn find(id: &str) -> Option<&'static Instrument> {
        let id = id.strip_prefix(QUESTIONNAIRE_BASE).and_then(|r| r.strip_prefix(':')).unwrap_or(id);
        INSTRUMENTS.into_iter().find(|i| i.id == id)
    }

    /// The canonical URL a QuestionnaireResponse names.
    pub fn canonical(&self) -> String {
        format!("{QUESTIONNAIRE_BASE}:{}", self.id)
    }

    /// The highest answer value of an item.
    pub fn max_value(&self) -> u8 {
        u8::try_from(self.options.len().saturating_sub(1)).unwrap_or(0)
    }

    /// The highest total.
    pub fn max_total(&self) -> u8 {
        self.bands.last().map(|b| b.to).unwrap_or(0)
    }

    /// The band of a total.
    pub fn band(&self, total: u8) -> Option<Band> {
        self.bands.iter().copied().find(|b| (b.from..=b.to).contains(&total))
    }

    /// Check answers (one per item, in order, each `0..=max`) and score them.
    /// Every item must be answered: none of the three has a prorating rule we
    /// apply (PHQ-9 and GAD-7 are not scored with an item missing; CORE-10's
    /// manual allows prorating one missing item, which we leave out), so an
    /// incomplete form is refused and nothing is stored. The errors name items
    /// by number, never their answers.
    pub fn score(&self, answers: &[Option<u8>]) -> Result<Score, String> {
        if answers.len() != self.items.len() {
            return Err(format!("{} has {} items", self.title, self.items.len()));
        }
        let missing: Vec<String> =
            answers.iter().enumerate().filter(|(_, a)| a.is_none()).map(|(i, _)| (i + 1).to_string()).collect();
        if !missing.is_empty() {
            return Err(format!("answer every item; not answered: {}", missing.join(", ")));
        }
        let max = self.max_value();
        let mut total: u8 = 0;
        for (i, a) in answers.iter().enumerate() {
            let value = a.unwrap_or(0);
            if value > max {
                return Err(format!("item {} takes an answer from 0 to {max}", i + 1));
            }
            let scored = if self.reversed.contains(&(i + 1)) { max - value } else { value };
            total = total.saturating_add(scored);
        }
        let band = self.band(total).ok_or("the total is outside the instrument's range")?;
        let risk = self.risk_item.and_then(|r| answers.get(r - 1).copied().flatten()).filter(|v| *v > 0);
        Ok(Score { total, band, risk })
    }

    /// The instrument as a FHIR R4 Questionnaire (built in, read-only, no PHI).
    pub fn questionnaire(&self) -> Value {
        let options: Vec<Value> = self
            .options
            .iter()
            .enumerate()
            .map(|(v, label)| {
                json!({"valueCoding": {"system": format!("{MEASURES_SYSTEM}:{}:answer", self.id),
                    "code": v.to_string(), "display": label}})
            })
            .collect();
        let mut items = vec![json!({"linkId": "stem", "type": "display", "text": self.stem})];
        for (i, text) in self.items.iter().enumerate() {
            items.push(json!({
                "linkId": (i + 1).to_string(), "type": "choice", "required": true, "text": text,
                "answerOption": options,
            }));
        }
        json!({
            "resourceType": "Questionnaire",
            "id": self.id,
            "url": self.canonical(),
            "name": self.title.replace('-', ""),
            "title": self.title,
            "status": "active",
            "subjectType": ["Patient"],
            "copyright": self.copyright,
            "code": [{"system": self.code.0, "code": self.code.1, "display": self.code.2}],
            "item": items,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(v: u8, n: usize) -> Vec<Option<u8>> {
        vec![Some(v); n]
    }

    #[test]
    fn phq9_scores_and_bands() {
        assert_eq!(PHQ9.score(&all(0, 9)).unwrap().total, 0);
        assert_eq!(PHQ9.score(&all(3, 9)).unwrap().total, 27);
        assert_eq!(PHQ9.score(&all(3, 9)).unwrap().band.code, "severe");
        for (total, band) in [
            (0, "minimal"),
            (4, "minimal"),
            (5, "mild"),
            (9, "mild"),
            (10, "moderate"),
            (14, "moderate"),
            (15, "moderately-severe"),
            (19, "moderately-severe"),
            (20, "severe"),
            (27, "severe"),
        ] {
            assert_eq!(PHQ9.band(total).unwrap().code, band, "{total}");
        }
        let mut a = all(1, 9);
        a[8] = Some(0);
        let s = PHQ9.score(&a).unwrap();
        assert_eq!((s.total, s.band.code, s.risk), (8, "mild", None));
        a[8] = Some(2);
        assert_eq!(PHQ9.score(&a).unwrap().risk, Some(2));
    }

    #[test]
    fn gad7_scores_and_bands() {
        assert_eq!(GAD7.score(&all(3, 7)).unwrap().total, 21);
        for (total, band) in [(4, "minimal"), (5, "mild"), (10, "moderate"), (14, "moderate"), (15, "severe")] {
            assert_eq!(GAD7.band(total).unwrap().code, band, "{total}");
        }
        assert_eq!(GAD7.band(22), None);
        assert_eq!(GAD7.score(&all(2, 7)).unwrap().risk, None, "GAD-7 has no risk item");
    }

    #[test]
    fn core10_reverses_items_2_and_3() {
        // All "not at all": items 2 and 3 count 4 each.
        assert_eq!(CORE10.score(&all(0, 10)).unwrap().total, 8);
        // All "most or all of the time": 8 items × 4, items 2 and 3 count 0.
        assert_eq!(CORE10.score(&all(4, 10)).unwrap().total, 32);
        let mut best = all(0, 10);
        best[1] = Some(4);
        best[2] = Some(4);
        let s = CORE10.score(&best).unwrap();
        assert_eq!((s.total, s.band.code), (0, "healthy"));
        let mut worst = all(4, 10);
        worst[1] = Some(0);
        worst[2] = Some(0);
        assert_eq!(CORE10.score(&worst).unwrap().total, 40);
        for (total, band) in [
            (5, "healthy"),
            (6, "low"),
            (10, "low"),
            (11, "mild"),
            (14, "mild"),
            (15, "moderate"),
            (19, "moderate"),
            (20, "moderately-severe"),
            (24, "moderately-severe"),
            (25, "severe"),
            (40, "severe"),
        ] {
            assert_eq!(CORE10.band(total).unwrap().code, band, "{total}");
        }
        // Item 6 ("I made plans to end my life") above 0 is flagged.
        let mut risk = best.clone();
        risk[5] = Some(1);
        assert_eq!(CORE10.score(&risk).unwrap().risk, Some(1));
    }

    #[test]
    fn incomplete_or_out_of_range_answers_are_refused() {
        let mut a = all(1, 9);
        a[3] = None;
        a[6] = None;
        assert_eq!(PHQ9.score(&a).unwrap_err(), "answer every item; not answered: 4, 7");
        let mut a = all(1, 9);
        a[0] = Some(4);
        assert!(PHQ9.score(&a).unwrap_err().contains("item 1 takes an answer from 0 to 3"));
        assert!(CORE10.score(&all(5, 10)).is_err());
        assert!(CORE10.score(&all(4, 10)).is_ok());
        assert!(PHQ9.score(&all(1, 8)).is_err());
        assert!(PHQ9.score(&all(1, 10)).is_err());
    }

    #[test]
    fn bands_cover_the_range_without_gaps() {
        for i in INSTRUMENTS {
            let max = i.max_total();
            assert_eq!(usize::from(max), i.items.len() * usize::from(i.max_value()), "{}", i.id);
            for t in 0..=max {
                assert_eq!(i.bands.iter().filter(|b| (b.from..=b.to).contains(&t)).count(), 1, "{} {t}", i.id);
            }
        }
    }

    #[test]
    fn instruments_are_found_by_id_or_canonical_url() {
        assert_eq!(Instrument::find("phq-9").unwrap().title, "PHQ-9");
        assert_eq!(Instrument::find(&GAD7.canonical()).unwrap().id, "gad-7");
        assert!(Instrument::find("phq-10").is_none());
        let q = CORE10.questionnaire();
        assert_eq!(q["item"].as_array().unwrap().len(), 11);
        assert_eq!(q["item"][1]["answerOption"].as_array().unwrap().len(), 5);
    }
}
