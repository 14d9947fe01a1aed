#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A care-team membership counts while its period holds, judged at each
//! access by the injected clock, not when the team was written (issue 14).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use confidant_fhir::ResourceType;
use confidant_policy::{Principal, Role};
use confidant_records::{Clock, Records, RecordsError, SearchRequest};
use confidant_store::Store;
use confidant_vault::{KeyFile, Vault};
use serde_json::json;

struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_millis(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

fn who(id: &str, role: Role, practitioner: Option<&str>) -> Principal {
    Principal {
        user_id: id.into(),
        role,
        practitioner_id: practitioner.map(str::to_owned),
        patient_id: None,
        scopes: None,
        source: None,
        credential: None,
        training: Default::default(),
    }
}

fn ms(s: &str) -> i64 {
    confidant_fhir::time_range(s).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_membership_lapses_when_its_period_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("t.db").display());
    let store = Store::connect(&url, true).await.unwrap();
    store.migrate().await.unwrap();
    let vault = Vault::new(Arc::new(KeyFile::generate("test").unwrap()));
    confidant_records::initialise(&store, &vault, "test", 1).await.unwrap();
    let clock = Arc::new(TestClock(AtomicI64::new(ms("2026-01-15T12:00:00Z"))));
    let records = Records::open(store, vault, clock.clone()).await.unwrap();

    let admin = who("admin", Role::Admin, None);
    let practitioner = |family: &str| json!({"resourceType": "Practitioner", "name": [{"family": family}]});
    let p1 = records.create(&admin, ResourceType::Practitioner, practitioner("One")).await.unwrap().id;
    let p2 = records.create(&admin, ResourceType::Practitioner, practitioner("Two")).await.unwrap().id;
    let (c1, c2) = (who("u1", Role::Clinician, Some(&p1)), who("u2", Role::Clinician, Some(&p2)));
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Virtanen"}]});
    let pat = records.create(&c1, ResourceType::Patient, patient).await.unwrap().id;
    // Clinician 2 covers for January; the team itself runs until the end of June.
    let team = json!({"resourceType": "CareTeam", "status": "active",
        "subject": {"reference": format!("Patient/{pat}")}, "period": {"end": "2026-06-30"},
        "participant": [{"member": {"reference": format!("Practitioner/{p2}")},
                         "period": {"start": "2026-01-10", "end": "2026-01-31"}}]});
    records.create(&admin, ResourceType::CareTeam, team).await.unwrap();

    let search = SearchRequest { params: vec![("_id".into(), pat.clone())], count: 10, after: None };
    let sees = |at: &str| {
        clock.0.store(ms(at), Ordering::SeqCst);
        let records = &records;
        let (c2, pat, search) = (&c2, &pat, &search);
        async move {
            let read = match records.read(c2, ResourceType::Patient, pat).await {
                Ok(_) => true,
                Err(RecordsError::NotFound(_)) => false,
                Err(e) => panic!("{e:?}"),
            };
            let found = records.search(c2, ResourceType::Patient, search).await.unwrap().total;
            assert_eq!(i64::from(read), found, "read and search agree");
            read
        }
    };
    assert!(!sees("2026-01-09T23:59:59Z").await, "before the period");
    assert!(sees("2026-01-10T00:00:00Z").await, "from its first day");
    assert!(sees("2026-01-31T23:59:59Z").await, "through its last day");
    assert!(!sees("2026-02-01T00:00:00Z").await, "not after it, though nothing was written since");
    // The clinician who registered the patient keeps an open-ended membership.
    assert!(records.read(&c1, ResourceType::Patient, &pat).await.is_ok());
}
