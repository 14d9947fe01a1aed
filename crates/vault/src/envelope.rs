//! The sealed envelope: the byte layout of every ciphertext Confidant stores.
//!
//! ```text
//! offset  size  field
//! 0       1     format version      (FORMAT_V1 = 0x01)
//! 1       1     algorithm           (ALG_AES_256_GCM = 0x01)
//! 2       4     key version, u32 big-endian (the data key or KEK version that sealed it)
//! 6       12    nonce               (random, drawn by AWS-LC)
//! 18      n+16  ciphertext and GCM tag
//! ```
//!
//! The six header bytes are part of the associated data, so a header that is
//! edited (say, to claim another key version) fails authentication.

use crate::VaultError;

/// Current envelope format.
pub const FORMAT_V1: u8 = 0x01;
/// AES-256-GCM, 96-bit random nonce, 128-bit tag (NIST SP 800-38D).
pub const ALG_AES_256_GCM: u8 = 0x01;

pub(crate) const HEADER_LEN: usize = 6;
pub(crate) const NONCE_LEN: usize = 12;
pub(crate) const TAG_LEN: usize = 16;
/// Bytes an envelope adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + NONCE_LEN + TAG_LEN;

/// Where a record ciphertext belongs. Every field is bound into the AEAD's
/// associated data: change any of them and the ciphertext no longer opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordContext<'a> {
    /// FHIR resource type, e.g. `Patient`.
    pub resource_type: &'a str,
    /// The resource's logical id.
    pub id: &'a str,
    /// The resource version this ciphertext holds.
    pub version: i64,
    /// The owning compartment: the patient id, or the organisation compartment.
    pub compartment: &'a str,
}

/// The organisation's compartment (the same string as the store's
/// `ORGANISATION`): staff records and the identity service's secrets.
pub const ORGANISATION_COMPARTMENT: &str = "_organisation";

/// The resource type under which break-glass reasons are sealed.
const BREAK_GLASS: &str = "BreakGlass";

impl<'a> RecordContext<'a> {
    /// A stored resource version: `resource_type/id` at `version`, in `compartment`.
    pub fn record(resource_type: &'a str, id: &'a str, version: i64, compartment: &'a str) -> Self {
        RecordContext { resource_type, id, version, compartment }
    }

    /// The stated reason of the break-glass `id`, sealed with `patient`'s key.
    pub fn break_glass(id: &'a str, patient: &'a str) -> Self {
        RecordContext { resource_type: BREAK_GLASS, id, version: 1, compartment: patient }
    }

    /// A small secret of the organisation (a username, a TOTP secret), bound
    /// to its kind and owner id, sealed with the organisation's key.
    pub fn secret(kind: &'a str, owner: &'a str) -> Self {
        RecordContext { resource_type: kind, id: owner, version: 1, compartment: ORGANISATION_COMPARTMENT }
    }
}

/// The parsed fixed header of an envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub format: u8,
    pub algorithm: u8,
    pub key_version: u32,
}

impl Header {
    pub(crate) fn v1(key_version: u32) -> Self {
        Header { format: FORMAT_V1, algorithm: ALG_AES_256_GCM, key_version }
    }

    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let v = self.key_version.to_be_bytes();
        [self.format, self.algorithm, v[0], v[1], v[2], v[3]]
    }

    /// Read the header of `envelope`, checking that this build can open it.
    pub fn parse(envelope: &[u8]) -> Result<Header, VaultError> {
        if envelope.len() < OVERHEAD {
            return Err(VaultError::Integrity);
        }
        let h = Header {
            format: envelope[0],
            algorithm: envelope[1],
            key_version: u32::from_be_bytes([envelope[2], envelope[3], envelope[4], envelope[5]]),
        };
        if h.format != FORMAT_V1 {
            return Err(VaultError::Unsupported(format!("format version {}", h.format)));
        }
        if h.algorithm != ALG_AES_256_GCM {
            return Err(VaultError::Unsupported(format!("algorithm {}", h.algorithm)));
        }
        Ok(h)
    }
}

/// Builds associated data as a domain label followed by length-prefixed
/// fields, so that no two distinct field lists encode to the same bytes.
pub(crate) struct Aad(Vec<u8>);

impl Aad {
    pub(crate) fn new(domain: &str, header: Header) -> Self {
        let mut a = Aad(Vec::with_capacity(128));
        a.push(domain.as_bytes());
        a.push(&header.to_bytes());
        a
    }

    pub(crate) fn push(&mut self, field: &[u8]) -> &mut Self {
        // Fields are short (ids, names); u32 lengths cannot overflow here.
        let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(field);
        self
    }

    pub(crate) fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl RecordContext<'_> {
    pub(crate) fn aad(&self, header: Header) -> Aad {
        let mut a = Aad::new("confidant.record.v1", header);
        a.push(self.resource_type.as_bytes())
            .push(self.id.as_bytes())
            .push(&self.version.to_be_bytes())
            .push(self.compartment.as_bytes());
        a
    }
}
