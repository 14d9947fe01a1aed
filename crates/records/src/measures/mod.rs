//! Outcome measures: a clinician sends a PHQ-9, GAD-7 or CORE-10 to the
//! patient's portal (or starts one to fill in during the session) as an
//! in-progress QuestionnaireResponse; the patient (or the clinician) answers
//! it; the server checks the answers against the instrument, scores them and
//! stores the completed response with its score (an Observation) in one
//! transaction. A risk item answered above 0 tags the score `needs-attention`
//! until a clinician acknowledges it (an audited update).
//!
//! Every one of these is sealed in the patient's compartment like any other
//! record; what may be done is `confidant_policy::measures`, which records
//! are reached is the visibility rule, and each access is audited by the
//! usual path (`Records::entry`).

mod instruments;

pub use instruments::{
    ACKNOWLEDGED, Band, CORE10, GAD7, INSTRUMENTS, Instrument, MEASURES_SYSTEM, NEEDS_ATTENTION, PHQ9,
    QUESTIONNAIRE_BASE, Score,
};

use std::collections::BTreeMap;

use confidant_audit::{Action as AuditAction, Outcome};
use confidant_fhir::ResourceType;
use confidant_policy::{self as policy, Action, Principal};
use confidant_store::{StoreError, Write};
use serde_json::{Value, json};

use crate::{Records, RecordsError, Result, Stored};

/// The instrument a stored QuestionnaireResponse answers.
pub fn instrument_of(response: &Value) -> Option<&'static Instrument> {
    response["questionnaire"].as_str().and_then(Instrument::find)
}

/// Is this stored QuestionnaireResponse waiting for answers?
pub fn is_pending(response: &Value) -> bool {
    response["status"] == "in-progress"
}

/// Does this stored score carry an unacknowledged risk flag?
pub fn needs_attention(score: &Value) -> bool {
    score["meta"]["tag"]
        .as_array()
        .is_some_and(|tags| tags.iter().any(|t| t["system"] == MEASURES_SYSTEM && t["code"] == NEEDS_ATTENTION))
}

fn refused(d: policy::Denied) -> RecordsError {
    RecordsError::Forbidden(d.to_string())
}

impl Records {
    /// A new, in-progress QuestionnaireResponse of `instrument` (`phq-9`,
    /// `gad-7`, `core-10`) for a patient in the clinician's care: it appears
    /// in their portal until it is answered.
    pub async fn send_measure(&self, p: &Principal, patient: &str, instrument: &str) -> Result<Stored> {
        if let Err(d) = policy::may_send_measure(p) {
            self.audit_denied(p, AuditAction::Create, ResourceType::QuestionnaireResponse, None).await;
            return Err(refused(d));
        }
        let Some(instrument) = Instrument::find(instrument) else {
            return Err(RecordsError::Invalid("unknown questionnaire: choose PHQ-9, GAD-7 or CORE-10".into()));
        };
        if !confidant_fhir::is_valid_id(patient) {
            return Err(RecordsError::NotFound(format!("Patient/{patient}")));
        }
        let response = json!({
            "resourceType": "QuestionnaireResponse",
            "status": "in-progress",
            "questionnaire": instrument.canonical(),
            "subject": {"reference": format!("Patient/{patient}")},
            "authored": confidant_fhir::instant(self.clock.now_millis()),
        });
        // The care relationship is checked, and the write audited, as for any record.
        self.create_permitted(p, ResourceType::QuestionnaireResponse, response, None).await
    }

    /// Answer a pending measure: `answers` maps item numbers (1-based) to
    /// values; every item must be answered, within its scale, and no other
    /// item named. The completed response and its score (with the risk flag,
    /// if any) are stored together; returns both. Nothing is stored if
    /// anything is refused.
    pub async fn answer_measure(
        &self,
        p: &Principal,
        response_id: &str,
        answers: &BTreeMap<usize, u8>,
    ) -> Result<(Stored, Stored)> {
        let rt = ResourceType::QuestionnaireResponse;
        self.permit(p, rt, Action::Read, AuditAction::Update).await?;
        let (current, seen) = self.visible_head(p, rt, response_id, AuditAction::Update).await?;
        let stored = self.open_record(current.clone()).await?;
        if let Err(d) = policy::may_answer_measure(p, is_pending(&stored.resource)) {
            self.audit_denied(p, AuditAction::Update, rt, Some(&current)).await;
            return Err(refused(d));
        }
        let instrument = instrument_of(&stored.resource).ok_or(RecordsError::Integrity)?;
        if let Some(extra) = answers.keys().find(|k| **k == 0 || **k > instrument.items.len()) {
            return Err(RecordsError::Invalid(format!("{} has no item {extra}", instrument.title)));
        }
        let answers: Vec<Option<u8>> = (1..=instrument.items.len()).map(|i| answers.get(&i).copied()).collect();
        let answers = answers.as_slice();
        let score = instrument.score(answers).map_err(RecordsError::Invalid)?;
        let patient = current.compartment.clone();
        let now = self.clock.now_millis();
        let who = match (&p.practitioner_id, &p.patient_id) {
            (Some(pr), _) => format!("Practitioner/{pr}"),
            (_, Some(pa)) => format!("Patient/{pa}"),
            _ => return Err(RecordsError::Integrity),
        };
        let items: Vec<Value> = instrument
            .items
            .iter()
            .zip(answers)
            .enumerate()
            .map(|(i, (text, a))| {
                let v = a.unwrap_or(0);
                json!({"linkId": (i + 1).to_string(), "text": text, "answer": [{"valueCoding": {
                    "system": format!("{MEASURES_SYSTEM}:{}:answer", instrument.id),
                    "code": v.to_string(),
                    "display": instrument.options.get(usize::from(v)).copied().unwrap_or(""),
                }}]})
            })
            .collect();
        let mut completed = stored.resource.clone();
        completed["status"] = json!("completed");
        completed["authored"] = json!(confidant_fhir::instant(now));
        completed["author"] = json!({"reference": who});
        completed["source"] = json!({"reference": format!("Patient/{patient}")});
        completed["item"] = Value::Array(items);
        let version = current.version_id + 1;
        let mut observation = self.score_observation(instrument, &score, &patient, response_id, now);
        let completed_check = confidant_fhir::validate(rt, &mut completed, now).map_err(|_| RecordsError::Integrity)?;
        let score_check = confidant_fhir::validate(ResourceType::Observation, &mut observation, now)
            .map_err(|_| RecordsError::Integrity)?;
        let observation_id = confidant_vault::random_id().map_err(RecordsError::Vault)?;
        Self::stamp(&mut completed, response_id, version, now);
        Self::stamp(&mut observation, &observation_id, 1, now);
        let (response_tokens, score_tokens) =
            (self.tokens(rt, &completed_check.index), self.tokens(ResourceType::Observation, &score_check.index));
        let mut retried = false;
        loop {
            let key = self.keyring.current_key(&patient).await?;
            let body = self.seal_body(&key, rt, response_id, version, &patient, &completed)?;
            let row = Self::version_row(rt, response_id, version, &patient, &key, now, body, (None, true));
            let body = self.seal_body(&key, ResourceType::Observation, &observation_id, 1, &patient, &observation)?;
            let obs_row = Self::version_row(
                ResourceType::Observation,
                &observation_id,
                1,
                &patient,
                &key,
                now,
                body,
                (None, true),
            );
            let audit = [
                self.entry(p, AuditAction::Update, Outcome::Success, Some(&row), seen).to_row(),
                self.entry(p, AuditAction::Create, Outcome::Success, Some(&obs_row), seen).to_row(),
            ];
            let write = Write { row: &row, tokens: &response_tokens, new_key: None, care_team: None };
            let create = Write { row: &obs_row, tokens: &score_tokens, new_key: None, care_team: None };
            match self.store.update_and_create(write, current.version_id, &[create], &audit).await {
                Ok(()) => {
                    self.committed(Some(p), &audit).await;
                    let response = Stored {
                        resource_type: rt,
                        id: response_id.to_owned(),
                        version_id: version,
                        last_updated: now,
                        resource: completed,
                    };
                    let score = Stored {
                        resource_type: ResourceType::Observation,
                        id: observation_id,
                        version_id: 1,
                        last_updated: now,
                        resource: observation,
                    };
                    return Ok((response, score));
                }
                Err(StoreError::StaleKey) if !retried => {
                    retried = true;
                    self.keyring.forget_current_key(&patient);
                }
                // Answered twice at once: the first answer stands.
                Err(StoreError::Conflict) => {
                    return Err(RecordsError::Forbidden(
                        "this questionnaire has been completed and cannot be changed".into(),
                    ));
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The score of a completed measure, as the server computed it.
    fn score_observation(
        &self,
        instrument: &Instrument,
        score: &Score,
        patient: &str,
        response_id: &str,
        now: i64,
    ) -> Value {
        let (system, code, display) = instrument.code;
        let mut o = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "survey", "display": "Survey"}]}],
            "code": {"coding": [{"system": system, "code": code, "display": display}], "text": instrument.title},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": confidant_fhir::instant(now),
            "issued": confidant_fhir::instant(now),
            "valueInteger": score.total,
            "interpretation": [{
                "coding": [{"system": format!("{MEASURES_SYSTEM}:band"), "code": score.band.code, "display": score.band.name}],
                "text": score.band.name,
            }],
            "derivedFrom": [{"reference": format!("QuestionnaireResponse/{response_id}")}],
        });
        if let (Some(value), Some(item)) = (score.risk, instrument.risk_item) {
            o["meta"] = json!({"tag": [{"system": MEASURES_SYSTEM, "code": NEEDS_ATTENTION,
                "display": "risk item answered above 0"}]});
            o["component"] = json!([{
                "code": {"coding": [{"system": MEASURES_SYSTEM, "code": format!("{}-item-{item}", instrument.id)}],
                    "text": format!("{} item {item}", instrument.title)},
                "valueInteger": value,
            }]);
        }
        o
    }

    /// A clinician acknowledges a score's risk flag: a new version of the
    /// score without `needs-attention` (tagged `acknowledged`), audited as an
    /// update by them. `version`: the version they saw.
    pub async fn acknowledge_measure_flag(
        &self,
        p: &Principal,
        score_id: &str,
        version: Option<i64>,
    ) -> Result<Stored> {
        let rt = ResourceType::Observation;
        if let Err(d) = policy::may_acknowledge_flag(p) {
            self.audit_denied(p, AuditAction::Update, rt, None).await;
            return Err(refused(d));
        }
        self.permit(p, rt, Action::Read, AuditAction::Update).await?;
        let (current, _) = self.visible_head(p, rt, score_id, AuditAction::Update).await?;
        let stored = self.open_record(current).await?;
        if !needs_attention(&stored.resource) {
            return Err(RecordsError::Unprocessable("this score has no flag to acknowledge".into()));
        }
        let mut next = stored.resource.clone();
        next["meta"] = json!({"tag": [{"system": MEASURES_SYSTEM, "code": ACKNOWLEDGED,
            "display": "risk item acknowledged by a clinician"}]});
        self.update_permitted(p, rt, score_id, next, Some(version.unwrap_or(stored.version_id))).await
    }
}
