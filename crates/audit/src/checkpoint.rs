//! Signed tree heads ("checkpoints"): the size and root of the audit tree at a
//! moment, signed with the audit signing key, written to a witness outside
//! the database. One checkpoint is one line of text:
//!
//! ```text
//! confidant-checkpoint v1 <origin> <size> <root hex> <unix ms> <ed25519 signature hex>
//! ```
//!
//! The signature covers everything before it on the line, so an attacker
//! with the database but without the signing key cannot forge one.

use confidant_vault::signing::{self, Signer};

use crate::merkle::Hash;

const PREFIX: &str = "confidant-checkpoint v1";

/// An unsigned tree head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The instance the log belongs to.
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    /// Unix time in milliseconds.
    pub timestamp: i64,
}

/// A checkpoint with its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature: [u8; 64],
}

impl Checkpoint {
    /// The signed text: fixed order, no optional parts, one space between fields.
    fn body(&self) -> String {
        format!("{PREFIX} {} {} {} {}", self.origin, self.size, hex::encode(self.root), self.timestamp)
    }

    /// Sign with the audit signing key. The origin may hold no whitespace.
    pub fn sign(self, key: &dyn Signer) -> Result<SignedCheckpoint, String> {
        if self.origin.is_empty() || self.origin.chars().any(char::is_whitespace) {
            return Err("the instance id cannot be an origin".into());
        }
        let signature = key.sign(self.body().as_bytes()).map_err(|e| format!("cannot sign a checkpoint: {e}"))?;
        Ok(SignedCheckpoint { checkpoint: self, signature })
    }
}

impl SignedCheckpoint {
    /// The witness line (without a newline).
    pub fn to_line(&self) -> String {
        format!("{} {}", self.checkpoint.body(), hex::encode(self.signature))
    }

    /// Parse a witness line; `None` if it is not one.
    pub fn parse(line: &str) -> Option<SignedCheckpoint> {
        let rest = line.trim_end().strip_prefix(PREFIX)?.strip_prefix(' ')?;
        let parts: Vec<&str> = rest.split(' ').collect();
        let [origin, size, root, timestamp, sig] = parts.as_slice() else { return None };
        let root: Hash = hex::decode(root).ok()?.try_into().ok()?;
        let signature: [u8; 64] = hex::decode(sig).ok()?.try_into().ok()?;
        let checkpoint = Checkpoint {
            origin: (*origin).to_owned(),
            size: size.parse().ok()?,
            root,
            timestamp: timestamp.parse().ok()?,
        };
        // Refuse anything that would not print back to the same line.
        let parsed = SignedCheckpoint { checkpoint, signature };
        (parsed.to_line() == line.trim_end()).then_some(parsed)
    }

    /// Is the signature valid for this public key?
    pub fn verify(&self, public_key: &[u8; 32]) -> bool {
        signing::verify(public_key, self.checkpoint.body().as_bytes(), &self.signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_print_parse_verify() {
        let key = confidant_vault::signing::SigningKey::generate().unwrap();
        let c = Checkpoint { origin: "inst1".into(), size: 42, root: [7u8; 32], timestamp: 1_790_000_000_000 };
        let s = c.clone().sign(&key).unwrap();
        let line = s.to_line();
        let back = SignedCheckpoint::parse(&line).unwrap();
        assert_eq!(back, s);
        assert!(back.verify(&key.public_key()));
        // Any edit breaks it: the size, the root, the time, the origin.
        for (from, to) in [(" 42 ", " 43 "), ("0707", "0708"), ("1790000000000", "1790000000001"), ("inst1", "inst2")] {
            let forged = SignedCheckpoint::parse(&line.replacen(from, to, 1)).unwrap();
            assert!(!forged.verify(&key.public_key()), "{from} -> {to}");
        }
        assert!(!s.verify(&confidant_vault::signing::SigningKey::generate().unwrap().public_key()));
        for bad in ["", "garbage", &line[..line.len() - 2], &format!("{line} extra"), &line.replace(" 42 ", " 042 ")] {
            assert!(SignedCheckpoint::parse(bad).is_none(), "{bad}");
        }
        assert!(Checkpoint { origin: "has space".into(), ..c }.sign(&key).is_err());
    }
}
