//! Blind indexes: exact-match search without a plaintext search column.
//!
//! A blind token is HMAC-SHA256 (RFC 2104) under the instance's blind-index
//! key, over a domain label, the resource type, the search parameter and the
//! normalised value, truncated to 128 bits. The key is random, independent of
//! every encryption key, and stored only wrapped by the KEK; without it, a
//! token cannot be computed or tested against a guess.
//!
//! What tokens leak (written down in docs/security.md, S1): rows whose values are
//! equal after normalisation carry equal tokens, for the same parameter.

use std::fmt;

use aws_lc_rs::hmac;
use unicode_normalization::UnicodeNormalization;

use crate::envelope::{Aad, Header};
use crate::keys::KEY_LEN;

/// Bytes of HMAC output kept: 128 bits leave no practical collision.
pub const TOKEN_LEN: usize = 16;

/// A blind-index token as stored in the search table.
pub type BlindToken = [u8; TOKEN_LEN];

/// How a value is normalised before it is blinded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlindKind {
    /// Names and free-form strings: NFC, trimmed, lower-cased, inner whitespace collapsed.
    Text,
    /// Identifiers (e.g. the Finnish personal identity code): NFC, trimmed, lower-cased.
    Identifier,
    /// Dates: trimmed, otherwise exact.
    Date,
    /// E-mail addresses: NFC, trimmed, lower-cased.
    Email,
    /// Phone numbers: NFC, trimmed, without spaces, dashes, dots or parentheses.
    Phone,
}

/// Normalise `value` as `kind` prescribes. Search terms and stored values go
/// through this same function, so that they meet.
pub fn normalise(kind: BlindKind, value: &str) -> String {
    let nfc: String = value.trim().nfc().collect();
    match kind {
        BlindKind::Text => nfc.to_lowercase().split_whitespace().collect::<Vec<_>>().join(" "),
        BlindKind::Identifier | BlindKind::Email => nfc.to_lowercase(),
        BlindKind::Date => nfc,
        BlindKind::Phone => nfc.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}')).collect(),
    }
}

/// The key that computes blind tokens.
pub struct BlindIndexKey {
    key: hmac::Key,
}

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BlindIndexKey(redacted)")
    }
}

impl BlindIndexKey {
    pub(crate) fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        BlindIndexKey { key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// The token for `value` of search parameter `param` on `resource_type`.
    pub fn token(&self, resource_type: &str, param: &str, kind: BlindKind, value: &str) -> BlindToken {
        let mut a = Aad::new("confidant.blind.v1", Header::v1(0));
        a.push(resource_type.as_bytes()).push(param.as_bytes()).push(normalise(kind, value).as_bytes());
        let tag = hmac::sign(&self.key, a.bytes());
        let mut out = [0u8; TOKEN_LEN];
        out.copy_from_slice(&tag.as_ref()[..TOKEN_LEN]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(normalise(BlindKind::Text, "  VIRTANEN "), "virtanen");
        assert_eq!(normalise(BlindKind::Text, "Anna  Maria"), "anna maria");
        // "Å" precomposed and decomposed meet after NFC.
        assert_eq!(normalise(BlindKind::Text, "A\u{30a}berg"), normalise(BlindKind::Text, "\u{c5}berg"));
        assert_eq!(normalise(BlindKind::Identifier, " 131052-308t "), "131052-308t");
        assert_eq!(normalise(BlindKind::Phone, "+358 (40) 123-45.67"), "+358401234567");
        assert_eq!(normalise(BlindKind::Email, " Anna@Example.FI"), "anna@example.fi");
        assert_eq!(normalise(BlindKind::Date, " 1980-02-01 "), "1980-02-01");
    }

    #[test]
    fn tokens_are_keyed_and_domain_separated() {
        let k1 = BlindIndexKey::from_bytes(&[1u8; KEY_LEN]);
        let k2 = BlindIndexKey::from_bytes(&[2u8; KEY_LEN]);
        let t = |k: &BlindIndexKey, p: &str, v: &str| k.token("Patient", p, BlindKind::Text, v);
        assert_eq!(t(&k1, "family", "Virtanen"), t(&k1, "family", " virtanen"));
        assert_ne!(t(&k1, "family", "Virtanen"), t(&k2, "family", "Virtanen"));
        assert_ne!(t(&k1, "family", "Virtanen"), t(&k1, "given", "Virtanen"));
        assert_ne!(
            k1.token("Patient", "family", BlindKind::Text, "x"),
            k1.token("Practitioner", "family", BlindKind::Text, "x")
        );
    }
}
