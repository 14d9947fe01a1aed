//! The backup file reader (`confidant backup verify|restore`): the file taken
//! apart before any key is used (`split_file`), its signature checked and its
//! payload opened under keys it was not made with (both must refuse), and the
//! input read as an opened payload (`split_payload`). Nothing may panic.
#![no_main]

use std::sync::OnceLock;

use confidant_vault::backup::{BackupKey, FILE_MAGIC, SIGNATURE_LEN, split_file, split_payload};
use confidant_vault::signing;
use libfuzzer_sys::fuzz_target;

fn key() -> &'static BackupKey {
    static KEY: OnceLock<BackupKey> = OnceLock::new();
    KEY.get_or_init(|| BackupKey::generate("fuzz").unwrap_or_else(|e| panic!("{e}")))
}

fuzz_target!(|data: &[u8]| {
    // The input as a whole file, and with the magic line put in front (so that the rest is reached).
    let mut framed = FILE_MAGIC.to_vec();
    framed.extend_from_slice(data);
    for file in [data, &framed[..]] {
        let Some(parts) = split_file(file) else { continue };
        assert_eq!(parts.signature.len(), SIGNATURE_LEN);
        assert_eq!(parts.signed.len() + SIGNATURE_LEN, file.len());
        assert!(!parts.header.contains(&b'\n'));
        let _ = serde_json::from_slice::<serde_json::Value>(parts.header);
        assert!(!signing::verify(&[7u8; 32], parts.signed, parts.signature), "a signature forged");
        assert!(key().open(parts.header, parts.sealed).is_err(), "a payload opened under another key");
    }
    if let Some((manifest, db)) = split_payload(data) {
        assert_eq!(manifest.len() + 1 + db.len(), data.len());
        let _ = serde_json::from_slice::<serde_json::Value>(manifest);
    }
});
