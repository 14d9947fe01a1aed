//! The pages' texts in English (the default) and Finnish. Code is written
//! with the English text, `lang.t("Sign in")`; Finnish comes from the table
//! below. A test reads the page sources and fails on any text without a
//! Finnish line (and on lines no page uses any more).
//! Over 600 lines because the table holds every page's Finnish text.
//!
//! Over 600 lines because it is the table of every page text's Finnish line.
//!
//! Over 600 lines because it is the one table of every page's Finnish text.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use confidant_policy::Role;

/// The cookie that keeps the chosen language (`en` or `fi`).
pub(crate) const LANG_COOKIE: &str = "confidant_lang";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Lang {
    #[default]
    En,
    Fi,
}

impl Lang {
    pub(crate) fn parse(s: &str) -> Lang {
        if s == "fi" { Lang::Fi } else { Lang::En }
    }

    pub(crate) fn from_headers(h: &HeaderMap) -> Lang {
        crate::auth::cookie(h, LANG_COOKIE).map(Lang::parse).unwrap_or_default()
    }

    pub(crate) fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Fi => "fi",
        }
    }

    /// The text in this language (English where a Finnish line is missing,
    /// which the test below does not allow).
    pub(crate) fn t(self, en: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Fi => finnish().get(en).copied().unwrap_or(en),
        }
    }
}

fn finnish() -> &'static HashMap<&'static str, &'static str> {
    static TABLE: OnceLock<HashMap<&'static str, &'static str>> = OnceLock::new();
    TABLE.get_or_init(|| FI.iter().copied().collect())
}

pub(crate) fn role_name(l: Lang, role: Role) -> &'static str {
    match role {
        Role::Clinician => l.t("clinician"),
        Role::Reception => l.t("reception"),
        Role::Admin => l.t("admin"),
        Role::Auditor => l.t("auditor"),
        Role::Patient => l.t("patient"),
    }
}

/// A role as the audit view writes it (`clinician`, ...); other text as is.
pub(crate) fn role_code_name(l: Lang, code: &str) -> String {
    match Role::parse(code) {
        Some(r) => role_name(l, r).to_owned(),
        None => code.to_owned(),
    }
}

/// An audit action code in words (English keeps the code: auditors search by it).
pub(crate) fn action_name(l: Lang, code: &str) -> String {
    if l == Lang::En {
        return code.to_owned();
    }
    let fi = match code {
        "read" | "vread" => "luki",
        "history" => "luki historian",
        "search-hit" => "haku löysi",
        "create" => "loi",
        "update" => "muutti",
        "delete" => "poisti",
        "export" => "vei ulos",
        "break-glass" => "hätäkäyttö",
        _ => return code.to_owned(),
    };
    format!("{fi} ({code})")
}

pub(crate) fn severity_name(l: Lang, s: &str) -> &'static str {
    match s {
        "critical" => l.t("critical"),
        "high" => l.t("high"),
        "medium" => l.t("medium"),
        "low" => l.t("low"),
        _ => l.t("notice"),
    }
}

/// English → Finnish.
static FI: &[(&str, &str)] = &[
    ("", ""),
    ("Code from your authenticator app (or a recovery code)", "Todennussovelluksen koodi (tai varakoodi)"),
    (
        "Tokens act as their account: here they are made for reception accounts and your own, and a reception token reads nothing an administrator may not (no patients, no appointments; it may write them). Others are made at the server with `confidant token create`.",
        "Avain toimii tilinsä nimissä: täällä niitä tehdään vastaanoton tileille ja omallesi, eikä vastaanoton avain lue mitään, mitä ylläpitäjä ei saa lukea (ei potilaita eikä ajanvarauksia; kirjoittaa se saa). Muut tehdään palvelimella komennolla `confidant token create`.",
    ),
    (
        "A passkey on this device or a security key signs you in instead of the authenticator code: nothing to type, and it works only on this site. Keep the authenticator app: it is your way back in if a passkey is lost.",
        "Tämän laitteen pääsyavain tai turva-avain kirjaa sinut sisään todennussovelluksen koodin sijaan: mitään ei tarvitse kirjoittaa, ja se toimii vain tällä sivustolla. Pidä todennussovellus: sillä pääset takaisin, jos pääsyavain katoaa.",
    ),
    ("Add a passkey", "Lisää pääsyavain"),
    ("Added", "Lisätty"),
    (
        "Adding a passkey needs JavaScript and a browser that supports passkeys.",
        "Pääsyavaimen lisääminen vaatii JavaScriptin ja selaimen, joka tukee pääsyavaimia.",
    ),
    ("Last used", "Viimeksi käytetty"),
    ("Name", "Nimi"),
    ("Name it (e.g. work laptop)", "Anna sille nimi (esim. työkannettava)"),
    ("No passkeys yet.", "Ei vielä pääsyavaimia."),
    ("Passkeys", "Pääsyavaimet"),
    (
        "Passkeys are off on this server: the administrator sets server.public_url to the clinic's https address.",
        "Pääsyavaimet eivät ole käytössä tällä palvelimella: ylläpitäjä asettaa server.public_url-arvoksi klinikan https-osoitteen.",
    ),
    ("Sign in with a passkey instead of the code", "Kirjaudu pääsyavaimella koodin sijaan"),
    ("Wrong username, password or passkey.", "Väärä käyttäjätunnus, salasana tai pääsyavain."),
    ("(refused)", "(estetty)"),
    (
        "A patient id has letters, digits, '-' and '.' only.",
        "Potilastunnisteessa on vain kirjaimia, numeroita, '-' ja '.'.",
    ),
    ("A token is valid for 1 to 365 days.", "Avain on voimassa 1–365 päivää."),
    ("API tokens", "API-avaimet"),
    ("Access log", "Käyttöloki"),
    ("Account created", "Tili luotu"),
    ("Accounts", "Käyttäjätilit"),
    ("Acknowledge", "Kuittaa"),
    ("Action (read, search-hit, break-glass, …)", "Toiminto (read, search-hit, break-glass, …)"),
    ("Action", "Toiminto"),
    ("Actions", "Toiminnot"),
    ("Add a clinician", "Lisää terapeutti"),
    ("Add to the care team", "Lisää hoitotiimiin"),
    ("Administration", "Ylläpito"),
    ("Age (days)", "Ikä (päivää)"),
    ("Alerts", "Hälytykset"),
    ("Appointment", "Aika"),
    ("Appointments", "Ajat"),
    ("Audit log and alerts", "Tapahtumaloki ja hälytykset"),
    ("Audit log", "Tapahtumaloki"),
    ("Authenticator code (or a recovery code)", "Todennussovelluksen koodi (tai varakoodi)"),
    ("Back to the chart", "Takaisin potilaskertomukseen"),
    ("Back", "Takaisin"),
    ("Birth date", "Syntymäaika"),
    ("Book an appointment", "Varaa aika"),
    ("Book", "Varaa"),
    ("Born", "Syntynyt"),
    ("Care team of patient", "Potilaan hoitotiimi"),
    ("Care teams", "Hoitotiimit"),
    ("Choose a password (at least 12 characters)", "Valitse salasana (vähintään 12 merkkiä)"),
    ("Choose a role.", "Valitse rooli."),
    ("Choose a username", "Valitse käyttäjätunnus"),
    (
        "Clinician and patient accounts are linked to a record: create them at the server with `confidant user add`.",
        "Terapeutin ja potilaan tilit liittyvät tietueeseen: luo ne palvelimella komennolla `confidant user add`.",
    ),
    ("Code from the app", "Sovelluksen koodi"),
    ("Confirm", "Vahvista"),
    ("Continue the draft", "Jatka luonnosta"),
    ("Continue writing", "Jatka kirjoittamista"),
    ("Continue", "Jatka"),
    (
        "Copy it into the client's secret store now: it is shown only this once.",
        "Kopioi se nyt asiakasohjelman salaisuusvarastoon: se näytetään vain tämän kerran.",
    ),
    ("Create a token", "Luo avain"),
    ("Create account", "Luo tili"),
    ("Create token", "Luo avain"),
    ("Create your account", "Luo tilisi"),
    ("Data keys it wraps", "Sen salaamat datan avaimet"),
    ("Date", "Päivä"),
    ("Disable", "Poista käytöstä"),
    ("Download my data (FHIR Bundle, JSON)", "Lataa tietoni (FHIR Bundle, JSON)"),
    ("Download the report", "Lataa raportti"),
    ("Draft", "Luonnos"),
    (
        "Earlier versions are kept and can be read in the record's history.",
        "Aiemmat versiot säilyvät ja näkyvät tietueen historiassa.",
    ),
    ("Edit the note", "Muokkaa merkintää"),
    ("Edit", "Muokkaa"),
    ("Emergency access (break the glass)", "Hätäkäyttö (lasin rikkominen)"),
    ("Enable", "Ota käyttöön"),
    ("Encounters", "Käynnit"),
    ("End sessions", "Päätä istunnot"),
    ("Enrolment code", "Rekisteröintikoodi"),
    (
        "Every time someone opens, searches or changes your records it is recorded here. Ask your clinic about anything you do not recognise.",
        "Aina kun joku avaa, hakee tai muuttaa tietojasi, siitä jää merkintä tähän. Kysy klinikaltasi kaikesta, mitä et tunnista.",
    ),
    ("Expires", "Vanhenee"),
    ("Family name", "Sukunimi"),
    (
        "Find by family name or given name (at least 3 letters), identifier or birth date (YYYY-MM-DD)",
        "Hae sukunimellä tai etunimellä (vähintään 3 kirjainta), henkilötunnuksella tai syntymäajalla (VVVV-KK-PP)",
    ),
    ("Type at least 3 letters of the name.", "Kirjoita nimestä vähintään 3 kirjainta."),
    ("Fix:", "Korjaus:"),
    ("For", "Kenelle"),
    ("Format", "Muoto"),
    ("From", "Alkaen"),
    ("Gender", "Sukupuoli"),
    ("Give a patient id and a clinician.", "Anna potilastunniste ja terapeutti."),
    ("Give dates as YYYY-MM-DD, and JSON or CSV.", "Anna päivät muodossa VVVV-KK-PP, ja JSON tai CSV."),
    (
        "Give this one-time code to the new {role} in person or by phone; it is shown only now. They create their account at /enrol.",
        "Anna tämä kertakäyttöinen koodi uudelle käyttäjälle (rooli: {role}) henkilökohtaisesti tai puhelimessa; se näytetään vain nyt. Hän luo tilinsä sivulla /enrol.",
    ),
    (
        "Give this one-time code to {user} in person or by phone; it is shown only now. They sign in with their password and this code, then set up their authenticator again.",
        "Anna tämä kertakäyttöinen koodi käyttäjälle {user} henkilökohtaisesti tai puhelimessa; se näytetään vain nyt. Hän kirjautuu salasanallaan ja tällä koodilla ja ottaa sitten todennussovelluksen uudelleen käyttöön.",
    ),
    ("Given name", "Etunimi"),
    ("Identifier", "Henkilötunnus"),
    ("Incident report", "Tietoturvaloukkausraportti"),
    ("Invite someone", "Kutsu käyttäjä"),
    ("Key-encryption key:", "Avainten salausavain:"),
    (
        "Keys are rotated and retired at the server: `confidant keys rotate` and `confidant keys retire`; both are audited.",
        "Avaimet vaihdetaan ja poistetaan palvelimella: `confidant keys rotate` ja `confidant keys retire`; molemmat kirjataan lokiin.",
    ),
    ("Keys", "Avaimet"),
    ("Look up", "Hae"),
    ("Made", "Luotu"),
    ("Main", "Päävalikko"),
    ("Make an enrolment code", "Luo rekisteröintikoodi"),
    ("My patients", "Potilaani"),
    ("My schedule", "Aikatauluni"),
    (
        "New here with an enrolment code from your administrator?",
        "Uusi käyttäjä, ja sait ylläpitäjältä rekisteröintikoodin?",
    ),
    ("New session note", "Uusi käyntimerkintä"),
    ("New token", "Uusi avain"),
    ("No API tokens.", "Ei API-avaimia."),
    ("No active token has that id.", "Voimassa olevaa avainta tällä tunnisteella ei ole."),
    ("No appointments.", "Ei varattuja aikoja."),
    ("No high-severity findings.", "Ei vakavia havaintoja."),
    ("No notes yet.", "Ei vielä merkintöjä."),
    ("No open alerts.", "Ei avoimia hälytyksiä."),
    ("No patients found.", "Potilaita ei löytynyt."),
    ("Nobody is in this patient's care team.", "Potilaan hoitotiimissä ei ole ketään."),
    ("Not allowed", "Ei sallittu"),
    ("Not found", "Ei löytynyt"),
    ("Not in your care", "Ei hoidossasi"),
    ("Note", "Merkintä"),
    ("Notes", "Huomiot"),
    ("Nothing was booked.", "Mitään ei varattu."),
    ("Nothing was changed.", "Mitään ei muutettu."),
    ("Nothing was opened.", "Mitään ei avattu."),
    ("Nothing was saved.", "Mitään ei tallennettu."),
    ("Nothing yet.", "Ei vielä mitään."),
    ("Only a patient account has its own records to download.", "Vain potilastilillä on omia tietoja ladattavaksi."),
    (
        "Only if this is urgent and nobody in their care team can help. Access lasts {minutes} minutes, your reason is recorded, reviewed, raises an alert, and is shown to the patient.",
        "Vain jos asia on kiireellinen eikä kukaan potilaan hoitotiimistä voi auttaa. Pääsy kestää {minutes} minuuttia; perustelusi kirjataan, tarkastetaan, se nostaa hälytyksen ja näytetään potilaalle.",
    ),
    ("Only this user (user id, optional)", "Vain tämä käyttäjä (käyttäjätunniste, valinnainen)"),
    ("Open alerts", "Avoimet hälytykset"),
    ("Open the record", "Avaa tiedot"),
    ("Password", "Salasana"),
    ("Patient id", "Potilastunniste"),
    ("Patients", "Potilaat"),
    ("Personal identity code (optional)", "Henkilötunnus (valinnainen)"),
    ("Phone (optional)", "Puhelin (valinnainen)"),
    ("Phone", "Puhelin"),
    ("Please check the form", "Tarkista lomake"),
    ("Reason (at least 10 characters)", "Perustelu (vähintään 10 merkkiä)"),
    ("Record", "Tietue"),
    ("Recovery codes", "Varakoodit"),
    ("Register a patient", "Rekisteröi potilas"),
    ("Register", "Rekisteröi"),
    ("Remove", "Poista"),
    ("Reset second factor", "Nollaa toinen tunnistustekijä"),
    ("Revoke", "Peru"),
    ("Role", "Rooli"),
    ("Save as draft", "Tallenna luonnoksena"),
    ("Save note", "Tallenna merkintä"),
    (
        "Scan this code with an authenticator app, or type the secret, then enter the code it shows.",
        "Lue tämä koodi todennussovelluksella tai kirjoita salaisuus, ja anna sitten sovelluksen näyttämä koodi.",
    ),
    (
        "Scopes (e.g. user/Appointment.write user/Practitioner.read)",
        "Oikeudet (esim. user/Appointment.write user/Practitioner.read)",
    ),
    ("Scopes", "Oikeudet"),
    ("Search the audit log", "Hae tapahtumalokista"),
    ("Search to find a patient.", "Hae potilasta."),
    ("Search", "Hae"),
    ("Second factor", "Toinen tunnistustekijä"),
    ("Second factor reset", "Toinen tunnistustekijä nollattu"),
    ("Secret:", "Salaisuus:"),
    ("Security posture", "Tietoturvan tila"),
    ("Session note (draft)", "Käyntimerkintä (luonnos)"),
    ("Session note", "Käyntimerkintä"),
    ("Set up your authenticator", "Ota todennussovellus käyttöön"),
    ("Sign in", "Kirjaudu sisään"),
    ("Sign out", "Kirjaudu ulos"),
    (
        "Someone saved this note after you opened it. Nothing was overwritten: your text is below; compare it with the saved note, then save again.",
        "Joku tallensi tämän merkinnän sen jälkeen, kun avasit sen. Mitään ei kirjoitettu yli: tekstisi on alla; vertaa sitä tallennettuun merkintään ja tallenna uudelleen.",
    ),
    (
        "Something went wrong; nothing was shown or changed. Try again in a moment.",
        "Jokin meni vikaan; mitään ei näytetty eikä muutettu. Yritä hetken kuluttua uudelleen.",
    ),
    ("Status", "Tila"),
    ("Stay signed in", "Pysy kirjautuneena"),
    (
        "The address or the form could not be read. Go back and try again.",
        "Osoitetta tai lomaketta ei voitu lukea. Palaa takaisin ja yritä uudelleen.",
    ),
    (
        "The enrolment code is unknown, used or expired. Ask your administrator for a new one.",
        "Rekisteröintikoodi on tuntematon, käytetty tai vanhentunut. Pyydä ylläpitäjältä uusi.",
    ),
    (
        "The same checks as `confidant doctor` at the server; `confidant drill` tries the attacks.",
        "Samat tarkistukset kuin `confidant doctor` palvelimella; `confidant drill` kokeilee hyökkäykset.",
    ),
    ("There is no such account.", "Tällaista tiliä ei ole."),
    ("There is no such record in your care.", "Hoidossasi ei ole tällaista tietuetta."),
    (
        "This form has expired. Reload the page and try again.",
        "Lomake on vanhentunut. Lataa sivu uudelleen ja yritä uudestaan.",
    ),
    ("This page does not exist.", "Tätä sivua ei ole."),
    ("This page is not for your role.", "Tämä sivu ei ole roolillesi."),
    ("This patient is not in your care, or does not exist.", "Tämä potilas ei ole hoidossasi, tai häntä ei ole."),
    (
        "This server was started without its posture checks; run `confidant doctor` at the server.",
        "Palvelin käynnistettiin ilman tietoturvatarkistuksia; aja `confidant doctor` palvelimella.",
    ),
    ("To", "Asti"),
    ("Token", "Avain"),
    (
        "Too many attempts. Wait a few minutes, or ask an administrator to unlock the account.",
        "Liian monta yritystä. Odota muutama minuutti tai pyydä ylläpitäjää avaamaan tili.",
    ),
    ("Try again", "Yritä uudelleen"),
    ("Unknown change.", "Tuntematon muutos."),
    ("Unlock", "Avaa lukitus"),
    ("User id", "Käyttäjätunniste"),
    ("User", "Käyttäjä"),
    ("Username", "Käyttäjätunnus"),
    ("Valid for (days)", "Voimassa (päivää)"),
    ("Version", "Versio"),
    ("What it is for", "Käyttötarkoitus"),
    ("What", "Mitä"),
    ("When", "Milloin"),
    (
        "Which patients' records were opened, by whom, how often and when, read from the audit log: the list a data breach notification (GDPR Art. 33 and 34) needs. Patient ids only; honey records are marked (synthetic: nobody to notify). Making the report is itself recorded.",
        "Keiden potilaiden tietoja avattiin, kuka, kuinka usein ja milloin, tapahtumalokista luettuna: luettelo, jota tietoturvaloukkauksen ilmoitus (GDPR 33 ja 34 artikla) tarvitsee. Vain potilastunnisteet; ansatietueet on merkitty (keksittyjä: ei ketään ilmoitettavaa). Raportin laatiminen kirjataan itsekin.",
    ),
    ("Who has looked at my records", "Kuka on katsonut tietojani"),
    (
        "Who may open a patient's records is their care team. Look a patient up by the id reception or their clinician gives you.",
        "Potilaan tietoja saa avata hänen hoitotiiminsä. Hae potilas tunnisteella, jonka vastaanotto tai hänen terapeuttinsa antaa.",
    ),
    ("Who", "Kuka"),
    ("Why", "Miksi"),
    ("With", "Kenelle"),
    ("Wrong username, password or code.", "Väärä käyttäjätunnus, salasana tai koodi."),
    (
        "Your account is ready. Sign in, then set up your authenticator app.",
        "Tilisi on valmis. Kirjaudu sisään ja ota sitten todennussovellus käyttöön.",
    ),
    (
        "Your authenticator is set up. Keep these one-time recovery codes somewhere safe, apart from your phone: each opens your account once if the phone is lost.",
        "Todennussovellus on käytössä. Säilytä nämä kertakäyttöiset varakoodit turvassa, erillään puhelimestasi: kukin avaa tilisi kerran, jos puhelin katoaa.",
    ),
    ("Your records", "Tietosi"),
    (
        "Your session ends in two minutes unless you continue.",
        "Istuntosi päättyy kahden minuutin kuluttua, ellet jatka.",
    ),
    ("active", "käytössä"),
    ("admin", "ylläpitäjä"),
    ("auditor", "tarkastaja"),
    ("care", "hoito"),
    ("clinician", "terapeutti"),
    ("critical", "kriittinen"),
    ("current: new keys are wrapped with it", "nykyinen: uudet avaimet salataan sillä"),
    ("disabled", "poistettu käytöstä"),
    ("edited", "muokattu"),
    ("enrolled", "käytössä"),
    ("expired", "vanhentunut"),
    ("high", "vakava"),
    ("locked", "lukittu"),
    ("low", "vähäinen"),
    ("medium", "kohtalainen"),
    ("not yet", "ei vielä"),
    ("notice", "huomio"),
    ("pass", "kunnossa"),
    ("patient", "potilas"),
    ("reception", "vastaanotto"),
    ("revoked", "peruttu"),
    ("unused: can be retired", "käyttämätön: voidaan poistaa"),
    ("{n} high-severity findings: fix these first.", "{n} vakavaa havaintoa: korjaa nämä ensin."),
    ("{n} times", "{n} kertaa"),
    // Intake: registration with a clinician, its checks, the care-team search.
    ("A search is at most 100 characters.", "Haku on enintään 100 merkkiä."),
    (
        "Who may open a patient's records is their care team. Find the patient, then add or remove clinicians.",
        "Potilaan tietoja saa avata hänen hoitotiiminsä. Hae potilas ja lisää tai poista terapeutteja.",
    ),
    (
        "Reception finds patients by name or identity code on this page; administrators see no demographics.",
        "Vastaanotto hakee potilaita tällä sivulla nimellä tai henkilötunnuksella; ylläpitäjät eivät näe henkilötietoja.",
    ),
    ("Please check the marked fields: nothing was saved.", "Tarkista merkityt kentät: mitään ei tallennettu."),
    (
        "A patient with this personal identity code is already registered: nothing was saved.",
        "Tällä henkilötunnuksella on jo rekisteröity potilas: mitään ei tallennettu.",
    ),
    ("Open the existing record", "Avaa olemassa oleva potilas"),
    (
        "A patient with the same name and birth date is already registered: nothing was saved yet.",
        "Samanniminen potilas samalla syntymäajalla on jo rekisteröity: mitään ei ole vielä tallennettu.",
    ),
    ("If this is a different person, register anyway.", "Jos kyseessä on eri henkilö, rekisteröi silti."),
    ("E-mail (optional)", "Sähköposti (valinnainen)"),
    ("Clinician (care team)", "Terapeutti (hoitotiimi)"),
    ("Nobody yet", "Ei vielä ketään"),
    ("Register anyway", "Rekisteröi silti"),
    (
        "A personal identity code is 11 characters: DDMMYY, a century sign, three digits and a check character.",
        "Henkilötunnuksessa on 11 merkkiä: PPKKVV, välimerkki, kolme numeroa ja tarkistemerkki.",
    ),
    (
        "The century sign of a personal identity code is +, -, A–F or U–Y.",
        "Henkilötunnuksen välimerkki on +, -, A–F tai U–Y.",
    ),
    (
        "This personal identity code's check character does not match: check the code.",
        "Henkilötunnuksen tarkistemerkki ei täsmää: tarkista tunnus.",
    ),
    ("This personal identity code does not hold a real date.", "Henkilötunnuksen päivämäärä ei ole todellinen päivä."),
    ("Give the birth date as a date (YYYY-MM-DD).", "Anna syntymäaika päivämääränä (VVVV-KK-PP)."),
    ("A birth date cannot be in the future.", "Syntymäaika ei voi olla tulevaisuudessa."),
    ("A birth date before 1900 is not taken.", "Ennen vuotta 1900 olevaa syntymäaikaa ei hyväksytä."),
    (
        "A phone number has digits, spaces, + and - only, and at least 5 digits.",
        "Puhelinnumerossa on vain numeroita, välilyöntejä, + ja -, ja vähintään 5 numeroa.",
    ),
    (
        "Give an e-mail address like name@example.fi, or leave it empty.",
        "Anna sähköpostiosoite muodossa nimi@esimerkki.fi tai jätä kenttä tyhjäksi.",
    ),
    ("Required.", "Pakollinen."),
    ("At most 100 characters, on one line.", "Enintään 100 merkkiä, yhdellä rivillä."),
    (
        "The date in the personal identity code is not the birth date.",
        "Henkilötunnuksen päivämäärä ei ole syntymäaika.",
    ),
    ("Choose one of the clinic's clinicians.", "Valitse yksi vastaanoton terapeuteista."),
    // Notes: session date, kind, sign and lock, addenda.
    ("Ordinary (the care team reads it)", "Tavallinen (hoitotiimi lukee sen)"),
    ("Psychotherapy, PSYTHPN (only you read it)", "Psykoterapia, PSYTHPN (vain sinä luet sen)"),
    (
        "Shared with the patient (the patient reads it in the portal)",
        "Jaettu potilaalle (potilas lukee sen portaalissa)",
    ),
    ("Psychotherapy note", "Psykoterapiamuistiinpano"),
    ("Shared with the patient", "Jaettu potilaalle"),
    ("Session date", "Käynnin päivä"),
    ("Kind of note", "Merkinnän laji"),
    ("Notes by session date, newest first", "Merkinnät käyntipäivän mukaan, uusin ensin"),
    ("no session date", "ei käyntipäivää"),
    ("saved", "tallennettu"),
    ("Saved", "Tallennettu"),
    ("Signed", "Allekirjoitettu"),
    ("Addendum", "Lisäys"),
    ("Reason", "Syy"),
    ("Write the note: it is empty.", "Kirjoita merkintä: se on tyhjä."),
    ("Give the session's date as a date (YYYY-MM-DD).", "Anna käynnin päivä päivämääränä (VVVV-KK-PP)."),
    ("The session's date cannot be in the future.", "Käynnin päivä ei voi olla tulevaisuudessa."),
    ("Choose the kind of note.", "Valitse merkinnän laji."),
    ("Patient", "Potilas"),
    ("Written by", "Kirjoittaja"),
    ("Versions ({n})", "Versiot ({n})"),
    ("The note this addendum corrects", "Merkintä, jota tämä lisäys korjaa"),
    ("Sign and lock", "Allekirjoita ja lukitse"),
    (
        "A signed note cannot be changed; corrections are added as addenda.",
        "Allekirjoitettua merkintää ei voi muuttaa; korjaukset lisätään lisäyksinä.",
    ),
    ("Add an addendum", "Lisää lisäys"),
    (
        "This note is signed and locked. An addendum is added under it, signed by you; the note stays as it is.",
        "Tämä merkintä on allekirjoitettu ja lukittu. Lisäys tulee sen alle sinun allekirjoittamanasi; merkintä pysyy ennallaan.",
    ),
    ("Reason for the addendum", "Lisäyksen syy"),
    ("Add the signed addendum", "Lisää allekirjoitettu lisäys"),
    ("Versions of the note", "Merkinnän versiot"),
    ("Back to the note", "Takaisin merkintään"),
    ("Not signed", "Ei allekirjoitettu"),
    (
        "Someone saved this note after you opened it: read it again before you sign it.",
        "Joku tallensi merkinnän sen jälkeen, kun avasit sen: lue se uudelleen ennen kuin allekirjoitat.",
    ),
    ("Give the reason for the addendum.", "Anna lisäyksen syy."),
    ("Write the addendum: it is empty.", "Kirjoita lisäys: se on tyhjä."),
    ("This note is signed", "Merkintä on allekirjoitettu"),
    (
        "This note is signed and locked: it cannot be edited. Add an addendum to correct it.",
        "Merkintä on allekirjoitettu ja lukittu: sitä ei voi muokata. Korjaa se lisäyksellä.",
    ),
    ("recorded visit", "kirjattu käynti"),
    // --- reminders and the patient's appointments ---
    ("Your appointments", "Vastaanottoaikasi"),
    ("Your upcoming appointments at {clinic}:", "Tulevat vastaanottoaikasi ({clinic}):"),
    ("You have no upcoming appointments.", "Sinulla ei ole tulevia vastaanottoaikoja."),
    ("Cancel this appointment", "Peru tämä aika"),
    ("Cancelled", "Peruttu"),
    (
        "Less than {n} hours before the appointment it can no longer be cancelled here: please call the clinic.",
        "Alle {n} tuntia ennen vastaanottoaikaa sitä ei voi enää perua täällä: soita vastaanotolle.",
    ),
    ("Please call the clinic", "Soita vastaanotolle"),
    (
        "There is no such upcoming appointment of yours. Nothing was changed.",
        "Sinulla ei ole tällaista tulevaa vastaanottoaikaa. Mitään ei muutettu.",
    ),
    ("This link does not work", "Linkki ei toimi"),
    (
        "The link has expired or has already been used. To change an appointment, please call the clinic.",
        "Linkki on vanhentunut tai jo käytetty. Jos haluat muuttaa aikaa, soita vastaanotolle.",
    ),
    ("Your appointment at {clinic} on {when}.", "Vastaanottoaikasi: {clinic}, {when}."),
    ("Cancel your appointment?", "Perutaanko vastaanottoaikasi?"),
    ("Cancel the appointment", "Peru aika"),
    ("If you want to keep the appointment, just close this page.", "Jos haluat pitää ajan, sulje tämä sivu."),
    ("Appointment cancelled", "Aika peruttu"),
    (
        "Your appointment has been cancelled. You may close this page.",
        "Vastaanottoaikasi on peruttu. Voit sulkea tämän sivun.",
    ),
    // --- calendar and booking (issue 15) ---
    ("A series is 1 to 52 appointments.", "Sarjassa on 1–52 aikaa."),
    ("All clinicians", "Kaikki terapeutit"),
    ("Appointment type", "Käynnin tyyppi"),
    ("Calendar", "Kalenteri"),
    ("Cancel appointment", "Peru aika"),
    ("Cancellation reason", "Peruutuksen syy"),
    ("Change", "Muuta"),
    ("Choose a length: 45, 60 or 90 minutes.", "Valitse kesto: 45, 60 tai 90 minuuttia."),
    ("Choose an appointment type.", "Valitse käynnin tyyppi."),
    ("Choose how it repeats.", "Valitse, miten aika toistuu."),
    ("Choose which appointments.", "Valitse, mitä aikoja muutos koskee."),
    ("Clinician", "Terapeutti"),
    ("Day", "Päivä"),
    ("Does not repeat", "Ei toistu"),
    ("Double booking", "Päällekkäinen varaus"),
    ("Every two weeks", "Joka toinen viikko"),
    ("First visit", "Ensikäynti"),
    ("Follow-up", "Seurantakäynti"),
    ("Friday", "perjantai"),
    ("Give an end date on or after the first date.", "Anna päättymispäivä, joka on ensimmäinen päivä tai sen jälkeen."),
    ("Give how many times, or the date of the last one.", "Anna kertojen määrä tai viimeisen ajan päivä."),
    ("Give the date as a date (YYYY-MM-DD).", "Anna päivä muodossa VVVV-KK-PP."),
    (
        "Give the new date (YYYY-MM-DD) and time (HH:MM), and which appointments.",
        "Anna uusi päivä (VVVV-KK-PP) ja kellonaika (HH:MM) sekä mitä aikoja muutos koskee.",
    ),
    ("Give the time as hours and minutes (HH:MM).", "Anna kellonaika tunteina ja minuutteina (HH:MM)."),
    (
        "Give the view as day or week and the date as YYYY-MM-DD.",
        "Anna näkymäksi päivä tai viikko ja päivä muodossa VVVV-KK-PP.",
    ),
    ("How many times (if it repeats)", "Kuinka monta kertaa (jos toistuu)"),
    ("Length", "Kesto"),
    ("Mark as no-show", "Merkitse saapumatta jääneeksi"),
    ("Monday", "maanantai"),
    ("New date", "Uusi päivä"),
    ("New time", "Uusi kellonaika"),
    ("Next", "Seuraava"),
    ("Or until (last date)", "Tai päivään asti (viimeinen päivä)"),
    ("Other reason", "Muu syy"),
    ("Patient not in your care", "Potilas ei ole hoidossasi"),
    ("Please check the marked fields: nothing was booked.", "Tarkista merkityt kentät: mitään ei varattu."),
    ("Previous", "Edellinen"),
    ("Repeat", "Toisto"),
    ("Reschedule", "Siirrä aika"),
    ("Saturday", "lauantai"),
    ("Show", "Näytä"),
    ("Sunday", "sunnuntai"),
    (
        "The clinician already has an appointment at {time}: nothing was booked.",
        "Terapeutilla on jo aika {time}: mitään ei varattu.",
    ),
    (
        "The clinician already has an appointment at {time}: nothing was changed.",
        "Terapeutilla on jo aika {time}: mitään ei muutettu.",
    ),
    ("The clinician cancelled", "Terapeutti perui"),
    ("The patient cancelled", "Potilas perui"),
    ("Therapy session", "Terapiakäynti"),
    ("This and the rest of the series", "Tämä ja sarjan loput ajat"),
    ("This appointment only", "Vain tämä aika"),
    ("Thursday", "torstai"),
    ("Time (clinic time)", "Kellonaika (vastaanoton aikaa)"),
    ("Times are in the clinic's time zone:", "Ajat ovat vastaanoton aikavyöhykkeellä:"),
    ("Today", "Tänään"),
    ("Tuesday", "tiistai"),
    ("Wednesday", "keskiviikko"),
    ("Week", "Viikko"),
    ("Weekly", "Viikoittain"),
    ("Which", "Mitkä ajat"),
    ("attended", "käynyt"),
    ("booked", "varattu"),
    ("cancelled", "peruttu"),
    ("no-show", "ei saapunut"),
    ("other status", "muu tila"),
    ("series", "sarja"),
    ("Book anyway", "Varaa silti"),
    (
        "Each clinician's weekly hours, in the clinic's time zone. Leave a day empty if they do not work then. The calendar shades the time outside them, and booking outside them asks for a confirmation.",
        "Kunkin terapeutin viikoittaiset työajat vastaanoton aikavyöhykkeellä. Jätä päivä tyhjäksi, jos hän ei silloin työskentele. Kalenteri varjostaa työajan ulkopuolisen ajan, ja sen ulkopuolelle varattaessa pyydetään vahvistus.",
    ),
    (
        "Give each day's hours as HH:MM, the end after the start, or leave both empty. Nothing was saved.",
        "Anna kunkin päivän ajat muodossa HH:MM, loppu alun jälkeen, tai jätä molemmat tyhjiksi. Mitään ei tallennettu.",
    ),
    ("No working hours this day.", "Ei työaikaa tänä päivänä."),
    ("Outside working hours", "Työajan ulkopuolella"),
    ("Save working hours", "Tallenna työajat"),
    ("Working hours", "Työajat"),
    (
        "{time} is outside this clinician's working hours. Book anyway, or choose another time.",
        "{time} on terapeutin työajan ulkopuolella. Varaa silti tai valitse toinen aika.",
    ),
    // --- note templates, supervision and co-sign ---
    ("Note templates", "Merkintäpohjat"),
    ("Supervision", "Ohjaus"),
    ("To co-sign", "Vahvistettavat"),
    ("Template", "Pohja"),
    ("Template name", "Pohjan nimi"),
    ("There is no such template.", "Tällaista pohjaa ei ole."),
    ("Write at least one section: the note is empty.", "Kirjoita ainakin yksi osio: merkintä on tyhjä."),
    (
        "A built-in template cannot be changed; create a template of your own.",
        "Valmista pohjaa ei voi muuttaa; luo oma pohja.",
    ),
    (
        "A clinician in training signs their notes; their supervisor then co-signs them.",
        "Koulutettava kliinikko allekirjoittaa merkintänsä; hänen ohjaajansa vahvistaa ne sitten.",
    ),
    (
        "At most 30 sections; a title at most 100 characters, a prompt at most 500.",
        "Enintään 30 osiota; otsikko enintään 100 merkkiä, ohje enintään 500.",
    ),
    ("Awaiting co-sign by", "Odottaa vahvistusta:"),
    ("Back to the templates", "Takaisin pohjiin"),
    ("Built in", "Valmis pohja"),
    ("Choose clinicians from the list.", "Valitse kliinikot luettelosta."),
    ("Clinician in training", "Koulutettava kliinikko"),
    ("Co-sign", "Vahvista"),
    ("Co-signed by", "Vahvistanut"),
    ("Create the template", "Luo pohja"),
    ("Edit the template", "Muokkaa pohjaa"),
    ("End the supervision", "Lopeta ohjaus"),
    ("In training", "Koulutettavat"),
    ("New template", "Uusi pohja"),
    ("No notes are waiting for your co-signature.", "Yksikään merkintä ei odota vahvistustasi."),
    ("Nobody is in training.", "Kukaan ei ole koulutettavana."),
    ("Not saved", "Ei tallennettu"),
    ("Plain note (no template)", "Vapaa merkintä (ei pohjaa)"),
    ("Save a new version", "Tallenna uusi versio"),
    ("Save", "Tallenna"),
    (
        "Saving makes a new version; notes keep the version they were written with.",
        "Tallennus tekee uuden version; merkinnät pitävät version, jolla ne kirjoitettiin.",
    ),
    ("Sections, one a line: title | prompt", "Osiot, yksi riville: otsikko | ohje"),
    ("Set a supervisor", "Aseta ohjaaja"),
    (
        "Someone saved this note after you opened it: read it again before you co-sign it.",
        "Joku tallensi merkinnän sen jälkeen, kun avasit sen: lue se uudelleen ennen kuin vahvistat.",
    ),
    (
        "Someone saved this template after you opened it: open it again and repeat your change.",
        "Joku tallensi pohjan sen jälkeen, kun avasit sen: avaa se uudelleen ja tee muutoksesi uudestaan.",
    ),
    ("Supervisor", "Ohjaaja"),
    ("Use this template", "Käytä tätä pohjaa"),
    ("supervised by", "ohjaajana"),
    ("{n} sections", "{n} osiota"),
    // --- outcome measures ---
    ("minimal", "vähäinen"),
    ("mild", "lievä"),
    ("moderate", "keskivaikea"),
    ("moderately severe", "melko vaikea"),
    ("severe", "vaikea"),
    ("healthy", "terve"),
    ("low level", "matala"),
    ("item", "kysymys"),
    ("Measures", "Mittarit"),
    ("The measures could not be shown.", "Mittareita ei voitu näyttää."),
    ("Needs attention:", "Vaatii huomiota:"),
    ("No measures completed yet.", "Yhtään mittaria ei ole vielä täytetty."),
    ("Waiting for answers", "Odottaa vastauksia"),
    ("sent", "lähetetty"),
    ("Fill in now", "Täytä nyt"),
    ("Outcome measure", "Mittari"),
    ("Send to the portal", "Lähetä portaaliin"),
    ("Latest", "Viimeisin"),
    ("Score", "Pisteet"),
    ("Severity", "Vaikeusaste"),
    ("Needs attention", "Vaatii huomiota"),
    ("Choose to send the measure or to fill it in now.", "Valitse, lähetätkö mittarin vai täytetäänkö se nyt."),
    ("Questionnaires from your clinician", "Kyselyt terapeutiltasi"),
    ("Nothing to fill in.", "Ei täytettävää."),
    (
        "Your clinician has asked you to fill in these before your next session.",
        "Terapeuttisi on pyytänyt sinua täyttämään nämä ennen seuraavaa käyntiä.",
    ),
    (
        "The questions are shown in English: only an official translation of this questionnaire may be used, and we do not have one yet.",
        "Kysymykset näytetään englanniksi: kyselystä saa käyttää vain virallista käännöstä, eikä meillä ole sitä vielä.",
    ),
    ("Submit answers", "Lähetä vastaukset"),
    ("Already answered", "Jo vastattu"),
    ("This questionnaire has been answered already.", "Tähän kyselyyn on jo vastattu."),
    ("Thank you", "Kiitos"),
    (
        "Your answers have been saved and sent to your clinician.",
        "Vastauksesi on tallennettu ja lähetetty terapeutillesi.",
    ),
    (
        "Someone acknowledged this flag after you opened the page.",
        "Joku kuittasi tämän huomion sen jälkeen, kun avasit sivun.",
    ),
    ("Nothing was sent.", "Mitään ei lähetetty."),
    (
        "The form has a field this questionnaire does not have. Nothing was saved.",
        "Lomakkeessa on kenttä, jota tässä kyselyssä ei ole. Mitään ei tallennettu.",
    ),
    ("An item was answered twice. Nothing was saved.", "Kysymykseen vastattiin kahdesti. Mitään ei tallennettu."),
    // --- staff security training ---
    ("Training", "Koulutus"),
    ("done, expires soon", "suoritettu, vanhenee pian"),
    ("done", "suoritettu"),
    ("assigned to you", "määrätty sinulle"),
    ("overdue", "myöhässä"),
    ("updated: complete it again", "päivitetty: suorita uudelleen"),
    ("due", "suorittamatta"),
    ("assigned", "määrätty"),
    (
        "Your security training is overdue: patient records stay closed until you complete it.",
        "Tietoturvakoulutuksesi on myöhässä: potilastiedot pysyvät suljettuina, kunnes suoritat sen.",
    ),
    ("You have security training to complete.", "Sinulla on suorittamatonta tietoturvakoulutusta."),
    ("Go to your training", "Siirry koulutukseesi"),
    ("There is no such training module.", "Tällaista koulutusosiota ei ole."),
    ("Security training", "Tietoturvakoulutus"),
    (
        "Short modules on keeping patients' data safe. Read each page, answer its questions and pass to complete it. A pass counts for {n} months.",
        "Lyhyitä osioita potilastietojen suojaamisesta. Lue kunkin osion sivu, vastaa sen kysymyksiin ja läpäise se. Suoritus on voimassa {n} kuukautta.",
    ),
    ("Nothing is required of your role yet.", "Roolillesi ei ole vielä määrätty koulutusta."),
    ("Module", "Osio"),
    ("expires on", "vanhenee"),
    ("due since", "myöhässä alkaen"),
    ("due by", "suoritettava viimeistään"),
    ("Take again", "Suorita uudelleen"),
    ("Start", "Aloita"),
    ("Questions", "Kysymykset"),
    ("{n} correct answers are needed to pass.", "Läpäisyyn tarvitaan {n} oikeaa vastausta."),
    ("The answers could not be read. Nothing was saved.", "Vastauksia ei voitu lukea. Mitään ei tallennettu."),
    (
        "Answer every question with one of its choices. Nothing was saved.",
        "Vastaa jokaiseen kysymykseen valitsemalla yksi sen vaihtoehdoista. Mitään ei tallennettu.",
    ),
    (
        "This module was updated while you were answering. Open it again. Nothing was saved.",
        "Osio päivitettiin sillä aikaa, kun vastasit. Avaa se uudelleen. Mitään ei tallennettu.",
    ),
    ("{score} of {n} correct", "{score}/{n} oikein"),
    ("Passed.", "Läpäisty."),
    ("Not passed yet.", "Ei vielä läpäisty."),
    ("Read the feedback, then try again.", "Lue palaute ja yritä sitten uudelleen."),
    ("Your answer:", "Vastauksesi:"),
    ("correct", "oikein"),
    ("not correct", "ei oikein"),
    ("Back to your training", "Takaisin koulutukseesi"),
    ("Person", "Henkilö"),
    (
        "{current} of {n} staff have completed everything required of them.",
        "{current}/{n} työntekijää on suorittanut kaiken heiltä vaaditun.",
    ),
    ("Done", "Suoritettu"),
    ("Due", "Suorittamatta"),
    ("Overdue", "Myöhässä"),
    ("Assigned", "Määrätty"),
    ("Enforcement:", "Valvonta:"),
    ("A new module pack is imported at the server with", "Uusi koulutuspaketti tuodaan palvelimella komennolla"),
    ("Download the evidence (CSV)", "Lataa suoritustiedot (CSV)"),
    ("Printable evidence", "Tulostettava raportti"),
    ("Security training: evidence", "Tietoturvakoulutus: suoritukset"),
    ("Printed from Confidant on", "Tulostettu Confidantista"),
    ("A pass counts for {n} months.", "Suoritus on voimassa {n} kuukautta."),
    ("Modules:", "Osiot:"),
    ("Completions", "Suoritukset"),
    ("Passed", "Läpäisty"),
    // --- phishing drills ---
    ("Phishing drills", "Kalasteluharjoitukset"),
    ("Report phishing", "Ilmoita kalastelusta"),
    ("My drills", "Omat harjoitukset"),
    ("Nothing was reported.", "Mitään ei ilmoitettu."),
    ("No drill was started.", "Harjoitusta ei aloitettu."),
    ("...or to these people", "...tai näille henkilöille"),
    ("Clicked", "Avasi linkin"),
    (
        "Do not open links or sign in from an unexpected e-mail. Report it with Report phishing in Confidant, or ask a colleague.",
        "Älä avaa odottamattoman sähköpostin linkkejä äläkä kirjaudu niiden kautta. Ilmoita viestistä Confidantin Ilmoita kalastelusta -toiminnolla tai kysy työtoverilta.",
    ),
    ("Drill", "Harjoitus"),
    ("Drill e-mails (each person gets one of them)", "Harjoitusviestit (kukin saa yhden niistä)"),
    (
        "Each person gets their e-mail at a random time within the spread, in their own language. Staff need an e-mail address: confidant phishing email.",
        "Kukin saa viestinsä satunnaiseen aikaan jakson sisällä omalla kielellään. Henkilöstöllä on oltava sähköpostiosoite: confidant phishing email.",
    ),
    ("Give the start as a date and time.", "Anna alkamisaika päivämääränä ja kellonaikana."),
    (
        "Got an e-mail that asks you to open a link, sign in, pay or hurry? Paste its link, or the whole e-mail, here. Then delete the e-mail.",
        "Saitko viestin, joka pyytää avaamaan linkin, kirjautumaan, maksamaan tai kiirehtimään? Liitä tähän sen linkki tai koko viesti. Poista viesti sen jälkeen.",
    ),
    ("Median time to report", "Ilmoitusajan mediaani"),
    (
        "Names are shown (phishing.show_names). Under Finnish law on privacy in working life (laki yksityisyyden suojasta työelämässä) staff must be told beforehand how drill results are used; use them for training, not for discipline.",
        "Nimet näytetään (phishing.show_names). Laki yksityisyyden suojasta työelämässä edellyttää, että henkilöstölle kerrotaan etukäteen, miten harjoitusten tuloksia käytetään; käytä niitä koulutukseen, älä kurinpitoon.",
    ),
    ("New drill", "Uusi harjoitus"),
    ("Next time", "Ensi kerralla"),
    ("No drill e-mails yet.", "Harjoitusviestejä ei ole vielä tullut."),
    ("No drills yet.", "Harjoituksia ei ole vielä tehty."),
    ("Not opened, not reported.", "Ei avattu, ei ilmoitettu."),
    (
        "Nothing you typed was saved, sent or even read.",
        "Mitään kirjoittamaasi ei tallennettu, lähetetty eikä edes luettu.",
    ),
    ("Reported", "Ilmoitti"),
    ("Reporting rate", "Ilmoitusaste"),
    ("Reporting rate over the drills, oldest first:", "Ilmoitusaste harjoituksittain, vanhin ensin:"),
    ("Results", "Tulokset"),
    (
        "Results are totals: no one is named. An administrator can show names with phishing.show_names = true, after telling staff (Finland: laki yksityisyyden suojasta työelämässä).",
        "Tulokset ovat yhteismääriä: ketään ei nimetä. Ylläpitäjä voi näyttää nimet asetuksella phishing.show_names = true kerrottuaan siitä ensin henkilöstölle (laki yksityisyyden suojasta työelämässä).",
    ),
    ("Send to everyone in these roles", "Lähetä kaikille näissä rooleissa"),
    ("Sent", "Lähetetty"),
    ("Spread the e-mails over (hours)", "Jaa viestit ajalle (tuntia)"),
    ("Start (clinic time)", "Alkaa (klinikan aikaa)"),
    ("Start the drill", "Aloita harjoitus"),
    ("Submitted", "Syötti tietoja"),
    ("Thank you for reporting", "Kiitos ilmoituksesta"),
    (
        "That e-mail was a phishing drill by your clinic, and you reported it. This is exactly what to do with a real one.",
        "Viesti oli klinikkasi kalasteluharjoitus, ja ilmoitit siitä. Juuri näin toimitaan myös oikean kalasteluviestin kanssa.",
    ),
    ("The clues in this e-mail", "Tämän viestin tuntomerkit"),
    ("The e-mail:", "Viesti:"),
    ("The link or the e-mail", "Linkki tai viesti"),
    ("The spread is 0 to 720 hours.", "Jakso on 0–720 tuntia."),
    (
        "The text is only searched for a drill link; it is not stored. A mail that is not a drill is reported to the administrator as a suspected phishing attempt.",
        "Tekstistä etsitään vain harjoituslinkkiä; sitä ei tallenneta. Viestistä, joka ei ole harjoitus, ilmoitetaan ylläpitäjälle epäiltynä kalasteluyrityksenä.",
    ),
    (
        "This e-mail was a drill by your clinic, to practise spotting phishing. No harm was done.",
        "Viesti oli klinikkasi harjoitus kalasteluviestien tunnistamiseen. Mitään vahinkoa ei tapahtunut.",
    ),
    ("This was a phishing drill", "Tämä oli kalasteluharjoitus"),
    (
        "This was not one of your drill mails, so the administrator has been alerted to a suspected phishing e-mail. Do not open its links; delete it once the administrator has seen it.",
        "Tämä ei ollut sinun harjoitusviestisi, joten ylläpitäjälle on ilmoitettu epäillystä kalasteluviestistä. Älä avaa sen linkkejä; poista viesti, kun ylläpitäjä on nähnyt sen.",
    ),
    ("Time to report:", "Aika ilmoitukseen:"),
    ("Well spotted: that was a drill", "Hyvin huomattu: se oli harjoitus"),
    ("You opened its link.", "Avasit sen linkin."),
    ("You reported it", "Ilmoitit siitä"),
    ("You typed into the look-alike page.", "Kirjoitit tietoja jäljitelmäsivulle."),
    (
        "Your clinic sends practice phishing e-mails. Here is what you did with yours; only you see this page with your name on it.",
        "Klinikkasi lähettää harjoituskalasteluviestejä. Tässä näet, mitä teit omillesi; vain sinä näet tämän sivun nimelläsi.",
    ),
    // --- SMART App Launch: the consent page and the apps page ---
    ("App authorization", "Sovelluksen valtuutus"),
    (
        "This app is not registered here. Ask your administrator.",
        "Tätä sovellusta ei ole rekisteröity tänne. Kysy ylläpitäjältä.",
    ),
    (
        "The app asked to send you to an address not registered for it, so it was not sent there.",
        "Sovellus pyysi ohjaamaan sinut osoitteeseen, jota sille ei ole rekisteröity, joten sinua ei ohjattu sinne.",
    ),
    (
        "The app's request could not be read (a parameter is missing, repeated or malformed).",
        "Sovelluksen pyyntöä ei voitu lukea (parametri puuttuu, toistuu tai on virheellinen).",
    ),
    (
        "This app asks to use Confidant as you, with what your role allows:",
        "Tämä sovellus pyytää käyttää Confidantia sinuna, niin pitkälle kuin roolisi sallii:",
    ),
    (
        "It asked for more than it gets here; the rest is left out.",
        "Se pyysi enemmän kuin täällä saa; loput jätetään pois.",
    ),
    (
        "It gets a token that lasts an hour. Every record it opens is in the audit log as opened by you; an administrator can revoke the token.",
        "Se saa tunnin voimassa olevan tunnisteen. Jokainen sen avaama tieto kirjataan lokiin sinun avaamanasi; ylläpitäjä voi perua tunnisteen.",
    ),
    ("Allow", "Salli"),
    ("Deny", "Estä"),
    ("SMART apps", "SMART-sovellukset"),
    ("App registered", "Sovellus rekisteröity"),
    (
        "Give the app its client id and this server's FHIR base URL:",
        "Anna sovellukselle sen asiakastunnus ja tämän palvelimen FHIR-perusosoite:",
    ),
    ("No SMART apps.", "Ei SMART-sovelluksia."),
    ("App", "Sovellus"),
    ("Client id", "Asiakastunnus"),
    ("Redirect URIs", "Paluuosoitteet"),
    ("Registered", "Rekisteröity"),
    ("Register an app", "Rekisteröi sovellus"),
    (
        "Redirect URIs, one per line (https; http only for 127.0.0.1 and localhost)",
        "Paluuosoitteet, yksi riville (https; http vain osoitteille 127.0.0.1 ja localhost)",
    ),
    (
        "Scopes it may be given at most (e.g. user/Patient.rs user/Appointment.rs)",
        "Oikeudet, jotka sille voi enintään antaa (esim. user/Patient.rs user/Appointment.rs)",
    ),
    ("Register app", "Rekisteröi"),
    (
        "An app acts for each person who allows it, never with more than their role allows, and its tokens are listed under API tokens, where they can be revoked.",
        "Sovellus toimii jokaisen sen sallivan henkilön puolesta, ei koskaan enemmällä kuin hänen roolinsa sallii, ja sen tunnisteet näkyvät API-tunnisteissa, joissa ne voi perua.",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The English texts the page sources pass to `t` (and the other
    /// helpers that translate literal texts).
    fn texts_in_sources() -> Vec<String> {
        let sources = [
            include_str!("../web.rs"),
            include_str!("admin.rs"),
            include_str!("appointments.rs"),
            include_str!("audit.rs"),
            include_str!("booking.rs"),
            include_str!("calendar.rs"),
            include_str!("clinical.rs"),
            include_str!("front_desk.rs"),
            include_str!("hours.rs"),
            include_str!("i18n.rs"),
            include_str!("measures.rs"),
            include_str!("passkeys.rs"),
            include_str!("phishing.rs"),
            include_str!("portal.rs"),
            include_str!("sign_in.rs"),
            include_str!("templates.rs"),
            include_str!("training.rs"),
            include_str!("oauth.rs"),
            include_str!("apps.rs"),
        ];
        let mut out = Vec::new();
        for src in sources {
            for opener in [".t(\"", "stale_form(\"", "tab(\"", "account_button(me, u, \"", "field_text(\""] {
                for (at, _) in src.match_indices(opener) {
                    let rest = &src[at + opener.len()..];
                    let mut literal = &rest[..rest.find('"').unwrap_or(0)];
                    // For tab and account_button the text is the second literal.
                    if opener == "tab(\"" || opener.starts_with("account_button") {
                        let after = &rest[literal.len() + 1..];
                        let Some(start) = after.find('"') else { continue };
                        let after = &after[start + 1..];
                        literal = &after[..after.find('"').unwrap_or(0)];
                    }
                    out.push(literal.replace("\\'", "'"));
                }
            }
            // refuse_post: its one literal (what did not happen) before the closing parenthesis.
            for (at, _) in src.match_indices("refuse_post(&[") {
                let call = &src[at..at + src[at..].find(')').unwrap_or(0)];
                if let Some(text) = call.split('"').nth(1) {
                    out.push(text.to_owned());
                }
            }
        }
        out.retain(|t| !t.contains('\\'));
        out
    }

    #[test]
    fn every_text_has_a_finnish_line_and_every_line_is_used() {
        let used = texts_in_sources();
        assert!(used.len() > 150, "the scan found the page texts ({})", used.len());
        let missing: Vec<&String> = used.iter().filter(|t| !finnish().contains_key(t.as_str())).collect();
        assert!(missing.is_empty(), "texts without Finnish: {missing:#?}");
        let unused: Vec<&str> = FI.iter().map(|(en, _)| *en).filter(|en| !used.iter().any(|u| u == en)).collect();
        assert!(unused.is_empty(), "Finnish lines no page uses: {unused:#?}");
        assert_eq!(finnish().len(), FI.len(), "no English text twice in the table");
    }

    #[test]
    fn english_is_the_default_and_placeholders_survive() {
        assert_eq!(Lang::default(), Lang::En);
        assert_eq!(Lang::parse("de"), Lang::En);
        assert_eq!(Lang::Fi.t("Sign in"), "Kirjaudu sisään");
        assert_eq!(Lang::En.t("Sign in"), "Sign in");
        for (en, fi) in FI {
            for p in ["{n}", "{role}", "{minutes}"] {
                assert_eq!(en.contains(p), fi.contains(p), "placeholder {p} in {en:?}");
            }
        }
    }
}
