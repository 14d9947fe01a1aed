//! TOTP second factor (RFC 6238) and single-use recovery codes.
//!
//! Codes are HOTP (RFC 4226) over HMAC-SHA1 with a 30-second time step and
//! 6 digits: the only parameters every authenticator app supports. The
//! HMAC is AWS-LC's; this module only does RFC 4226's dynamic truncation.
//!
//! The clock is an argument (`unix_time`), never read here, so that callers
//! and tests control it.
//!
//! # Must never
//!
//! * accept a code for a time step at or before the last one used (replay);
//! * print a secret (`Debug` is redacted) or leave it in memory after drop.

use std::collections::HashSet;
use std::fmt;
use std::fmt::Write as _;

use aws_lc_rs::hmac;
use qrcode::QrCode;
use qrcode::render::svg;
use zeroize::Zeroizing;

use crate::{VaultError, random_bytes, secrets_equal};

/// Digits in a code: 6, what authenticator apps show (RFC 4226 §5.3 requires
/// at least 6 and allows up to 8).
pub const DIGITS: u32 = 6;

/// Length of a time step in seconds: RFC 6238 §5.2 recommends 30 s as a
/// balance between security and usability, and authenticator apps assume it.
pub const STEP_SECONDS: u64 = 30;

/// Accepted clock skew, in time steps either side of the current one.
///
/// RFC 6238 §5.2 recommends accepting at most one step of drift in each
/// direction, to cover clock skew and network delay; each further step widens
/// the window an attacker's guess can land in.
pub const SKEW_STEPS: u64 = 1;

/// Secret length in bytes: 160 bits, the length RFC 4226 §4 (R6) recommends
/// and the output size of HMAC-SHA1.
const SECRET_LEN: usize = 20;

/// Recovery-code alphabet: digits and upper-case letters without the easily
/// confused 0, O, 1, I and L. 31 symbols, about 4.95 bits each.
const RECOVERY_ALPHABET: &[u8; 31] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";

/// Characters in a recovery code, without the dash.
const RECOVERY_LEN: usize = 10;

/// A TOTP shared secret. Zeroized on drop; `Debug` does not print it.
pub struct TotpSecret(Zeroizing<Vec<u8>>);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TotpSecret(redacted)")
    }
}

impl TotpSecret {
    /// A new random secret of 20 bytes (160 bits, RFC 4226 §4).
    ///
    /// # Errors
    ///
    /// [`VaultError::Random`] if the system RNG fails.
    pub fn generate() -> Result<TotpSecret, VaultError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        random_bytes(&mut bytes)?;
        Ok(TotpSecret(bytes))
    }

    /// A secret from its raw bytes (as stored, after the vault opened them).
    pub fn from_bytes(bytes: &[u8]) -> TotpSecret {
        TotpSecret(Zeroizing::new(bytes.to_vec()))
    }

    /// The raw secret bytes, for sealing into storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The secret in RFC 4648 base32, upper case, without padding: the form
    /// authenticator apps accept for manual entry and in `otpauth://` URIs.
    pub fn to_base32(&self) -> String {
        data_encoding::BASE32_NOPAD.encode(&self.0)
    }
}

/// HOTP (RFC 4226 §5.3): HMAC-SHA1 of the counter, dynamically truncated,
/// reduced to [`DIGITS`] decimal digits.
fn hotp(secret: &TotpSecret, counter: u64) -> u32 {
    // SHA-1 is what RFC 6238 and every authenticator app use for TOTP. HMAC
    // does not rely on SHA-1's collision resistance, and the known collision
    // attacks do not carry over to HMAC-SHA-1 (RFC 6194 §3).
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret.as_bytes());
    let tag = hmac::sign(&key, &counter.to_be_bytes());
    let tag = tag.as_ref();
    let offset = usize::from(tag.last().copied().unwrap_or(0) & 0x0f);
    // A SHA-1 tag is 20 bytes and offset <= 15, so the window always exists.
    let binary = match tag.get(offset..offset + 4) {
        Some(&[a, b, c, d]) => u32::from_be_bytes([a, b, c, d]) & 0x7fff_ffff,
        _ => 0,
    };
    binary % 10u32.pow(DIGITS)
}

/// A code as the user sees it: zero-padded to [`DIGITS`] digits.
fn format_code(code: u32) -> String {
    format!("{code:0width$}", width = DIGITS as usize)
}

/// The time step `unix_time` falls in (RFC 6238 §4, with T0 = 0).
fn step_at(unix_time: u64) -> u64 {
    unix_time / STEP_SECONDS
}

/// The code for `unix_time` (seconds since the Unix epoch), zero-padded to 6 digits.
pub fn code_at(secret: &TotpSecret, unix_time: u64) -> String {
    format_code(hotp(secret, step_at(unix_time)))
}

/// Verify `code` at `unix_time`. Returns the matched time step, or None.
/// A step <= `last_used_step` is refused (no replay of a code, RFC 6238 §5.2).
///
/// Steps within [`SKEW_STEPS`] of the current one are accepted. Spaces and
/// other whitespace are ignored ("123 456"); anything but exactly 6 digits
/// is refused. The comparison is constant-time. Store the returned step as
/// the new `last_used_step`.
pub fn verify(secret: &TotpSecret, code: &str, unix_time: u64, last_used_step: Option<u64>) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let now = step_at(unix_time);
    let mut matched = None;
    // Every candidate is computed and compared, so the time taken does not
    // depend on which step matched.
    for step in now.saturating_sub(SKEW_STEPS)..=now.saturating_add(SKEW_STEPS) {
        let expected = format_code(hotp(secret, step));
        let fresh = last_used_step.is_none_or(|last| step > last);
        if secrets_equal(expected.as_bytes(), code.as_bytes()) && fresh {
            matched = Some(step);
        }
    }
    matched
}

/// Percent-encode everything but RFC 3986 unreserved characters.
fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The `otpauth://totp/...` URI an authenticator app enrols from (the
/// "Key Uri Format" of Google Authenticator, which other apps follow), with
/// issuer and account percent-encoded.
///
/// The URI contains the secret: show it to the enrolling user only, and
/// never log it.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        account = percent_encode(account),
        secret = secret.to_base32(),
    )
}

/// An SVG QR code of `uri`, with its quiet zone, for inlining in an HTML page.
///
/// The output is a bare `<svg>` element (no XML declaration, no style
/// attribute, no script): a background `<rect>` and one `<path>`. Returns an
/// empty string if `uri` is too long for a QR code (about 2,900 bytes), which
/// an `otpauth://` URI never is.
pub fn qr_svg(uri: &str) -> String {
    let Ok(code) = QrCode::new(uri.as_bytes()) else {
        return String::new();
    };
    let image = code.render::<svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build();
    // Drop the XML declaration: it is not valid inside an HTML document.
    match image.find("<svg") {
        Some(start) => image.get(start..).unwrap_or_default().to_owned(),
        None => image,
    }
}

/// Single-use recovery codes: `n` distinct codes of 10 characters from an
/// unambiguous alphabet (no 0/O/1/I/L), shown as `xxxxx-xxxxx`.
///
/// Each code is 10 symbols drawn uniformly from 31 (rejection sampling over
/// the CSPRNG), i.e. 10 × log2(31) ≈ 49.5 bits: a 31-symbol alphabet cannot
/// give a full 50 bits in 10 characters. That is ample for a single-use code
/// that is stored hashed and whose attempts are throttled. The codes are
/// distinct. Store only their hashes, after [`normalise_recovery_code`].
///
/// # Errors
///
/// [`VaultError::Random`] if the system RNG fails.
pub fn new_recovery_codes(n: usize) -> Result<Vec<String>, VaultError> {
    let mut seen = HashSet::with_capacity(n);
    let mut codes = Vec::with_capacity(n);
    while codes.len() < n {
        let code = new_recovery_code()?;
        if seen.insert(code.clone()) {
            codes.push(code);
        }
    }
    Ok(codes)
}

/// One recovery code, `xxxxx-xxxxx`.
fn new_recovery_code() -> Result<String, VaultError> {
    // 248 = 8 × 31: bytes at or above it are rejected so every symbol is
    // equally likely (no modulo bias).
    const LIMIT: u8 = 248;
    let mut symbols = Zeroizing::new(Vec::with_capacity(RECOVERY_LEN));
    let mut buf = Zeroizing::new([0u8; 32]);
    while symbols.len() < RECOVERY_LEN {
        random_bytes(buf.as_mut())?;
        for &byte in buf.iter().filter(|&&b| b < LIMIT) {
            if symbols.len() == RECOVERY_LEN {
                break;
            }
            let index = usize::from(byte) % RECOVERY_ALPHABET.len();
            if let Some(&symbol) = RECOVERY_ALPHABET.get(index) {
                symbols.push(symbol);
            }
        }
    }
    let mut code = String::with_capacity(RECOVERY_LEN + 1);
    for (i, &symbol) in symbols.iter().enumerate() {
        if i == RECOVERY_LEN / 2 {
            code.push('-');
        }
        code.push(char::from(symbol));
    }
    Ok(code)
}

/// Normalise a recovery code as typed: upper-case, without spaces or dashes,
/// so that "abcde fghjk" and "ABCDE-FGHJK" are the same code.
pub fn normalise_recovery_code(input: &str) -> String {
    input.chars().filter(|c| !c.is_whitespace() && *c != '-').flat_map(char::to_uppercase).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const RFC_SECRET: &[u8] = b"12345678901234567890";

    /// RFC 6238 Appendix B, SHA1 column: (time, 8-digit code).
    const RFC_VECTORS: [(u64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(RFC_SECRET)
    }

    #[test]
    fn rfc6238_vectors() {
        let secret = rfc_secret();
        for (time, eight) in RFC_VECTORS {
            let six = &eight[eight.len() - 6..];
            assert_eq!(code_at(&secret, time), six, "t = {time}");
            assert_eq!(verify(&secret, six, time, None), Some(time / 30));
        }
    }

    #[test]
    fn rfc4226_hotp_vectors() {
        // RFC 4226 Appendix D, counters 0..=9.
        let expected = [755_224, 287_082, 359_152, 969_429, 338_314, 254_676, 287_922, 162_583, 399_871, 520_489];
        let secret = rfc_secret();
        for (counter, code) in expected.into_iter().enumerate() {
            assert_eq!(hotp(&secret, counter as u64), code);
        }
    }

    #[test]
    fn skew_replay_and_malformed_codes() {
        let secret = TotpSecret::generate().unwrap();
        let now = 1_700_000_000;
        let step = now / STEP_SECONDS;
        let at = |offset: i64| code_at(&secret, now.checked_add_signed(offset).unwrap());

        assert_eq!(verify(&secret, &at(0), now, None), Some(step));
        assert_eq!(verify(&secret, &at(-30), now, None), Some(step - 1));
        assert_eq!(verify(&secret, &at(30), now, None), Some(step + 1));
        // Two steps off: refused (unless the codes happen to collide, 1 in 10^6).
        for offset in [-60, 60] {
            let code = at(offset);
            if code != at(-30) && code != at(0) && code != at(30) {
                assert_eq!(verify(&secret, &code, now, None), None);
            }
        }

        // Replay: a step at or before the last used one is refused.
        assert_eq!(verify(&secret, &at(0), now, Some(step)), None);
        assert_eq!(verify(&secret, &at(-30), now, Some(step - 1)), None);
        assert_eq!(verify(&secret, &at(-30), now, Some(step)), None);
        assert_eq!(verify(&secret, &at(30), now, Some(step)), Some(step + 1));
        assert_eq!(verify(&secret, &at(0), now, Some(step - 1)), Some(step));

        // Spaces are ignored; anything else malformed is refused.
        let code = at(0);
        let spaced = format!(" {} {} ", &code[..3], &code[3..]);
        assert_eq!(verify(&secret, &spaced, now, None), Some(step));
        for bad in ["abcdef", "", "1234567", "12345", "12345a", "１２３４５６"] {
            assert_eq!(verify(&secret, bad, now, None), None, "{bad:?}");
        }
    }

    #[test]
    fn verify_at_time_zero_does_not_underflow() {
        let secret = rfc_secret();
        assert_eq!(verify(&secret, &code_at(&secret, 0), 0, None), Some(0));
    }

    #[test]
    fn secret_encoding_and_debug() {
        let secret = rfc_secret();
        assert_eq!(secret.to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(secret.as_bytes(), RFC_SECRET);
        assert_eq!(format!("{secret:?}"), "TotpSecret(redacted)");

        let generated = TotpSecret::generate().unwrap();
        assert_eq!(generated.as_bytes().len(), 20);
        assert_eq!(generated.to_base32().len(), 32);
        assert_ne!(generated.as_bytes(), TotpSecret::generate().unwrap().as_bytes());
    }

    #[test]
    fn uri_and_qr() {
        let secret = rfc_secret();
        let uri = otpauth_uri(&secret, "Clinic Helsinki", "anna@example.fi");
        assert_eq!(
            uri,
            "otpauth://totp/Clinic%20Helsinki:anna%40example.fi?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\
             &issuer=Clinic%20Helsinki&algorithm=SHA1&digits=6&period=30"
        );
        assert!(!otpauth_uri(&secret, "A:B", "c").contains("A:B"));

        let svg = qr_svg(&uri);
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"), "{svg}");
        assert!(svg.contains("<svg"));
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("style") && !svg.contains("script"));
        assert_eq!(qr_svg(&"x".repeat(8000)), "");
    }

    #[test]
    fn recovery_codes() {
        let codes = new_recovery_codes(10).unwrap();
        assert_eq!(codes.len(), 10);
        assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 10);
        for code in &codes {
            assert_eq!(code.len(), 11, "{code}");
            assert_eq!(code.as_bytes()[5], b'-');
            assert!(code.bytes().enumerate().all(|(i, b)| i == 5 || RECOVERY_ALPHABET.contains(&b)), "{code}");
            assert!(!code.contains(['0', 'O', '1', 'I', 'L']));

            let normal = normalise_recovery_code(code);
            assert_eq!(normal, code.replace('-', ""));
            let loose = format!(" {} {} ", &normal[..5], &normal[5..]).to_lowercase();
            assert_eq!(normalise_recovery_code(&loose), normal);
            assert_eq!(normalise_recovery_code(&normal), normal);
        }
        assert!(new_recovery_codes(0).unwrap().is_empty());

        let bits = RECOVERY_LEN as f64 * (RECOVERY_ALPHABET.len() as f64).log2();
        assert!(bits > 49.5, "{bits}");
    }
}
