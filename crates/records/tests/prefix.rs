#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Name-prefix tokens (the keyring) and the re-index pass (the records service).

use std::sync::Arc;

use confidant_fhir::{PREFIX_MAX, PREFIX_MIN, PREFIX_TOKENS, ResourceType, fold_name};
use confidant_keyring::InstanceKeys;
use confidant_policy::{Principal, Role};
use confidant_records::{Records, Reindexed, SearchRequest, SystemClock};
use confidant_store::Store;
use confidant_vault::{KeyFile, Vault};
use serde_json::json;

fn admin() -> Principal {
    Principal {
        user_id: "console".into(),
        role: Role::Admin,
        practitioner_id: None,
        patient_id: None,
        scopes: None,
        source: None,
        credential: None,
        training: Default::default(),
    }
}

fn reception() -> Principal {
    Principal { user_id: "desk".into(), role: Role::Reception, ..admin() }
}

/// A store set up as instances were before prefix search: keys and id, no
/// record that names were indexed.
async fn old_instance(tmp: &tempfile::TempDir) -> (Store, Arc<KeyFile>) {
    let url = format!("sqlite://{}", tmp.path().join("t.db").display());
    let store = Store::connect(&url, true).await.unwrap();
    store.migrate().await.unwrap();
    let kek: Arc<KeyFile> = Arc::new(KeyFile::generate("test").unwrap());
    let vault = Vault::new(kek.clone());
    store.insert_setting("instance_id", b"test", 1).await.unwrap();
    InstanceKeys::new(&vault).unwrap().store(&store, 1).await.unwrap();
    (store, kek)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefix_tokens_hide_lengths_and_meet_the_search() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, kek) = old_instance(&tmp).await;
    let records = Records::open(store, Vault::new(kek), Arc::new(SystemClock)).await.unwrap();
    let k = records.keyring();
    let range = (PREFIX_MIN, PREFIX_MAX);
    let tokens = |name: &str| k.name_prefix_tokens("Patient", "family", &fold_name(name), range);
    for name in ["", "Li", "Ahonen", "Hämäläinen", "Vanhatalo-Rautiainen", "van der Berg", "Ли Бо"] {
        let t = tokens(name);
        assert_eq!(t.len(), PREFIX_TOKENS, "{name}: always as many");
        let mut distinct = t.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), PREFIX_TOKENS, "{name}: all distinct (none dropped as a duplicate row)");
        assert!(t.windows(2).all(|w| w[0] < w[1]), "{name}: sorted, not in length order");
    }
    // Each real prefix is there; a search term's token finds it.
    let virtanen = tokens("Virtanen");
    for len in PREFIX_MIN..="virtanen".len() {
        assert!(virtanen.contains(&k.name_prefix_token("Patient", "family", &"virtanen"[..len])), "{len}");
    }
    // The dummies are no search term's: not the name with a letter more, not the whole name.
    for term in ["virtanena", "virtanen-", "virtanen9", "8:virtanen"] {
        assert!(!virtanen.contains(&k.name_prefix_token("Patient", "family", term)), "{term}");
    }
    // Two names share exactly their common prefixes (3, 4 and 5 letters).
    let virtala = tokens("Virtala");
    assert_eq!(virtanen.iter().filter(|t| virtala.contains(t)).count(), 3);
    // A family name's tokens are not a given name's, nor another resource type's, nor an exact token.
    let given = k.name_prefix_tokens("Patient", "given", "virtanen", range);
    assert!(virtanen.iter().all(|t| !given.contains(t)));
    let practitioner = k.name_prefix_tokens("Practitioner", "family", "virtanen", range);
    assert!(virtanen.iter().all(|t| !practitioner.contains(t)));
    let exact = k.search_token("Patient", "family", confidant_vault::BlindKind::Text, "virtanen");
    assert!(!virtanen.contains(&exact));
    // "van der Berg": the 4-letter prefix "van " is a dummy (no folded term ends in a space).
    let van = tokens("van der Berg");
    assert!(van.contains(&k.name_prefix_token("Patient", "family", "van")));
    assert!(van.contains(&k.name_prefix_token("Patient", "family", "van d")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reindex_pass_runs_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, kek) = old_instance(&tmp).await;
    let records = Records::open(store.clone(), Vault::new(kek.clone()), Arc::new(SystemClock)).await.unwrap();
    let mut last = String::new();
    for (family, given) in [("Virtanen", "Aino"), ("Hämäläinen", "Åsa"), ("Korhonen", "Eero")] {
        let p = json!({"resourceType": "Patient", "name": [{"family": family, "given": [given]}]});
        last = records.create(&reception(), ResourceType::Patient, p).await.unwrap().id;
    }
    let p = json!({"resourceType": "Practitioner", "name": [{"family": "Lääkäri"}]});
    let pr = records.create(&admin(), ResourceType::Practitioner, p).await.unwrap().id;
    // An appointment from before the calendar gets the calendar's tokens in a pass of its own.
    let a = json!({"resourceType": "Appointment", "status": "booked",
        "start": "2027-03-29T07:00:00Z", "end": "2027-03-29T08:00:00Z",
        "participant": [{"actor": {"reference": format!("Patient/{last}")}, "status": "accepted"},
                        {"actor": {"reference": format!("Practitioner/{pr}")}, "status": "accepted"}]});
    records.create(&reception(), ResourceType::Appointment, a).await.unwrap();
    assert_eq!(records.reindex_names().await.unwrap(), Reindexed { resources: 5, skipped: 0 });
    assert_eq!(records.reindex_names().await.unwrap(), Reindexed::default(), "done once");
    let again = Records::open(store.clone(), Vault::new(kek), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(again.reindex_names().await.unwrap(), Reindexed::default(), "and recorded as done");
    let req = SearchRequest { params: vec![("name".into(), "HAMA".into())], count: 10, after: None };
    let found = again.search(&reception(), ResourceType::Patient, &req).await.unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(found.entries[0].resource["name"][0]["given"][0], "Åsa");

    // A new instance is marked at initialisation: nothing to re-index.
    let tmp2 = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp2.path().join("n.db").display());
    let fresh = Store::connect(&url, true).await.unwrap();
    fresh.migrate().await.unwrap();
    let kek: Arc<KeyFile> = Arc::new(KeyFile::generate("test").unwrap());
    confidant_records::initialise(&fresh, &Vault::new(kek.clone()), "fresh", 1).await.unwrap();
    assert!(fresh.setting(confidant_records::SETTING_NAME_PREFIXES).await.unwrap().is_some());
    let r = Records::open(fresh, Vault::new(kek), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(r.reindex_names().await.unwrap(), Reindexed::default());
}
