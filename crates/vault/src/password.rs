//! Password hashing and password policy.
//!
//! Passwords are stored only as argon2id hashes in PHC string format
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), each with its own random
//! salt. The policy follows NIST SP 800-63B §5.1.1.2: a minimum length, no
//! composition rules, and a refusal of passwords that are common, that
//! contain the user's own context (user name, service name), or that are easy
//! to guess for another reason: sequences (`123456789012`), repeats
//! (`aaaaaaaaaaaa`), keyboard walks (`qwertyuiopas`) and dictionary words
//! with decoration (`Password1234!`), as estimated by zxcvbn.
//!
//! Passwords are normalised to Unicode NFKC before they are measured, checked
//! or hashed (NIST SP 800-63B §5.1.1.2), so that the same password typed on
//! two keyboards that compose characters differently still matches.
//!
//! # Must never
//!
//! * log, print or return a password or a copy of one: the copies this module
//!   makes are zeroized on drop;
//! * tell "unknown user" apart from "wrong password" by timing: callers run
//!   [`verify_dummy`] when no account matches.

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

use crate::VaultError;

/// Shortest password accepted, in Unicode characters after NFKC.
///
/// NIST SP 800-63B §5.1.1.2 asks for at least 8 characters and recommends
/// length over composition rules; staff accounts in a clinical system guard
/// health data, so we ask for 12, with no rule about character classes.
pub const MIN_LENGTH: usize = 12;

/// Longest password accepted, in Unicode characters after NFKC.
///
/// NIST SP 800-63B §5.1.1.2 asks verifiers to allow at least 64 characters so
/// that pass phrases fit; 256 leaves room for those and bounds the work a
/// request can cause.
pub const MAX_LENGTH: usize = 256;

/// Shortest context string (user name, service name) that a password may not
/// contain: shorter strings occur by chance in too many good passwords.
const MIN_CONTEXT_LEN: usize = 4;

/// Lowest zxcvbn score accepted (0 to 4).
///
/// zxcvbn ("Low-Budget Password Strength Estimation", Wheeler, USENIX
/// Security 2016) scores 3 for passwords estimated to need more than 10^8
/// guesses; its authors advise treating anything below 3 as too weak. NIST SP
/// 800-63B §5.1.1.2 asks verifiers to refuse repetitive or sequential
/// characters and dictionary words, which are what a low score finds.
const MIN_STRENGTH_SCORE: u8 = 3;

// Argon2id parameters: 19 MiB of memory, 2 passes, 1 lane. This is the first
// of the equivalent configurations the OWASP Password Storage Cheat Sheet
// recommends for Argon2id ("a minimum configuration of 19 MiB of memory, an
// iteration count of 2, and 1 degree of parallelism"), also argon2's default.
// Raising them later is safe: `needs_rehash` reports hashes made with other
// parameters, and callers re-hash those at the next successful login.
/// Memory cost in KiB (OWASP Password Storage Cheat Sheet: 19 MiB).
const M_COST_KIB: u32 = 19 * 1024;
/// Number of passes over memory (OWASP Password Storage Cheat Sheet: 2).
const T_COST: u32 = 2;
/// Degree of parallelism (OWASP Password Storage Cheat Sheet: 1).
const P_COST: u32 = 1;
/// Hash output length in bytes: 256 bits, argon2's default; RFC 9106 §4 finds
/// 128 bits sufficient for most applications, so this leaves a margin.
const OUTPUT_LEN: usize = 32;
/// Salt length in bytes: 128 bits, which RFC 9106 §4 calls "sufficient for all
/// applications".
const SALT_LEN: usize = 16;

// Upper bounds on the costs `verify` accepts from a stored PHC string. A
// corrupted or planted row asking for, say, m = 4 TiB would otherwise make
// the allocator abort the process. They are far above the current costs so
// that raising those stays possible.
/// Largest memory cost `verify` runs, in KiB (1 GiB).
const MAX_M_COST_KIB: u32 = 1024 * 1024;
/// Largest number of passes `verify` runs.
const MAX_T_COST: u32 = 64;
/// Largest degree of parallelism `verify` runs.
const MAX_P_COST: u32 = 16;

/// The parameters every new hash is made with.
const PARAMS: Params = match Params::new(M_COST_KIB, T_COST, P_COST, Some(OUTPUT_LEN)) {
    Ok(params) => params,
    Err(_) => panic!("argon2 parameters out of range"),
};

/// Why a password was refused. The messages are meant to be shown to the
/// person choosing the password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordPolicyError {
    /// Fewer than `min` characters.
    #[error("password is too short: use at least {min} characters")]
    TooShort {
        /// The minimum length, in characters.
        min: usize,
    },
    /// More than `max` characters.
    #[error("password is too long: use at most {max} characters")]
    TooLong {
        /// The maximum length, in characters.
        max: usize,
    },
    /// Found in the list of common passwords.
    #[error("this password is among the most common passwords; choose another")]
    Common,
    /// Equal to, or containing, the user name or the service name.
    #[error("password must not contain your user name or the name of this service; choose another")]
    ContainsContext,
    /// Easy to guess: a sequence, a repeat, a keyboard walk, a word with
    /// digits or symbols added, a date.
    #[error(
        "password is too easy to guess ({why}); use three or four uncommon words, or a longer random password from a password manager"
    )]
    TooGuessable {
        /// What makes it guessable, in a fixed text that never quotes the password.
        why: &'static str,
    },
}

/// The embedded list: one lower-cased password a line, `#` lines are comments.
const COMMON_PASSWORDS_TEXT: &str = include_str!("../data/common-passwords.txt");

/// The common-password list, parsed once on first use.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    COMMON_PASSWORDS_TEXT.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('#')).collect()
});

/// How many passwords the embedded common-password list holds.
pub fn common_password_count() -> usize {
    COMMON_PASSWORDS.len()
}

/// `password` normalised to NFKC, in a buffer that is zeroized on drop.
fn normalise(password: &str) -> Zeroizing<String> {
    Zeroizing::new(password.nfkc().collect())
}

/// Check a new password against the policy (NIST SP 800-63B §5.1.1.2).
///
/// `context` holds strings the password must not contain, compared without
/// regard to case: the user name, the service name ("confidant") and the
/// like. Context strings shorter than 4 characters are ignored.
///
/// # Errors
///
/// The first rule the password breaks, in this order: length, common
/// passwords, context, strength (a zxcvbn score below 3).
pub fn check_policy(password: &str, context: &[&str]) -> Result<(), PasswordPolicyError> {
    let normalised = normalise(password);
    let length = normalised.chars().count();
    if length < MIN_LENGTH {
        return Err(PasswordPolicyError::TooShort { min: MIN_LENGTH });
    }
    if length > MAX_LENGTH {
        return Err(PasswordPolicyError::TooLong { max: MAX_LENGTH });
    }

    let lower = Zeroizing::new(normalised.to_lowercase());
    if COMMON_PASSWORDS.contains(lower.as_str()) {
        return Err(PasswordPolicyError::Common);
    }

    for item in context {
        let item: String = item.trim().nfkc().collect::<String>().to_lowercase();
        if item.chars().count() >= MIN_CONTEXT_LEN && lower.contains(item.as_str()) {
            return Err(PasswordPolicyError::ContainsContext);
        }
    }

    let strength = zxcvbn::zxcvbn(&normalised, context);
    if u8::from(strength.score()) < MIN_STRENGTH_SCORE {
        let warning = strength.feedback().and_then(zxcvbn::feedback::Feedback::warning);
        return Err(PasswordPolicyError::TooGuessable { why: weakness(warning) });
    }
    Ok(())
}

/// A fixed description of what zxcvbn found, for [`PasswordPolicyError::TooGuessable`].
fn weakness(warning: Option<zxcvbn::feedback::Warning>) -> &'static str {
    use zxcvbn::feedback::Warning;
    match warning {
        Some(Warning::StraightRowsOfKeysAreEasyToGuess | Warning::ShortKeyboardPatternsAreEasyToGuess) => {
            "it follows a pattern of keys on the keyboard"
        }
        Some(Warning::RepeatsLikeAaaAreEasyToGuess | Warning::RepeatsLikeAbcAbcAreOnlySlightlyHarderToGuess) => {
            "it repeats characters or a group of characters"
        }
        Some(Warning::SequencesLikeAbcAreEasyToGuess) => "it is a sequence such as abc or 6543",
        Some(
            Warning::ThisIsATop10Password
            | Warning::ThisIsATop100Password
            | Warning::ThisIsACommonPassword
            | Warning::ThisIsSimilarToACommonlyUsedPassword,
        ) => "it is a common password with small changes, such as capitals, digits or symbols added",
        Some(Warning::AWordByItselfIsEasyToGuess) => "it is a single word",
        Some(Warning::NamesAndSurnamesByThemselvesAreEasyToGuess | Warning::CommonNamesAndSurnamesAreEasyToGuess) => {
            "it is built from common names"
        }
        Some(Warning::RecentYearsAreEasyToGuess | Warning::DatesAreOftenEasyToGuess) => {
            "it is built from a date or a year"
        }
        None => "it is built from common words, digits and patterns",
    }
}

/// The argon2id hasher with the current parameters.
fn hasher() -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, PARAMS)
}

/// Hash `password` with argon2id (m = 19456 KiB, t = 2, p = 1) and a fresh
/// random 16-byte salt. Returns a PHC string, safe to store.
///
/// The password is normalised to NFKC first. Check it with [`check_policy`]
/// before hashing a new one.
///
/// # Errors
///
/// [`VaultError::Random`] if no salt could be drawn. Hashing itself cannot
/// fail with the fixed parameters; should it, that too is reported as
/// [`VaultError::Random`], the only error that leaves no password behind.
pub fn hash(password: &str) -> Result<String, VaultError> {
    let mut salt = [0u8; SALT_LEN];
    crate::random_bytes(&mut salt)?;
    let normalised = normalise(password);
    hasher()
        .hash_password_with_salt(normalised.as_bytes(), &salt)
        .map(|phc| phc.to_string())
        .map_err(|_| VaultError::Random)
}

/// Whether `phc` names an argon2 variant and costs that `verify` is willing to run.
fn acceptable(parsed: &PasswordHash) -> bool {
    let known =
        [Algorithm::Argon2id, Algorithm::Argon2i, Algorithm::Argon2d].iter().any(|alg| alg.ident() == parsed.algorithm);
    let Ok(params) = Params::try_from(parsed) else {
        return false;
    };
    known && params.m_cost() <= MAX_M_COST_KIB && params.t_cost() <= MAX_T_COST && params.p_cost() <= MAX_P_COST
}

/// Whether `password` matches the stored PHC string `phc`.
///
/// Uses the algorithm and parameters recorded in `phc`, so hashes made with
/// older parameters still verify (see [`needs_rehash`]). Returns `false` for
/// a wrong password and for anything unparsable or with absurd costs; never
/// panics. The final comparison is constant-time.
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    if !acceptable(&parsed) {
        return false;
    }
    let normalised = normalise(password);
    // The parameters in `phc` govern; the context's own are ignored.
    hasher().verify_password(normalised.as_bytes(), &parsed).is_ok()
}

/// A hash of a random value nobody knows, computed once, for [`verify_dummy`].
static DUMMY_PHC: LazyLock<String> = LazyLock::new(|| {
    let mut secret = Zeroizing::new([0u8; 32]);
    let mut salt = [0u8; SALT_LEN];
    // Should the RNG fail, fixed bytes still cost the same time to hash,
    // which is all this hash is for; no password can be derived from it.
    if crate::random_bytes(secret.as_mut()).is_err() || crate::random_bytes(&mut salt).is_err() {
        secret.fill(0x5a);
        salt.fill(0xa5);
    }
    let value = Zeroizing::new(hex::encode(secret.as_ref()));
    hasher().hash_password_with_salt(value.as_bytes(), &salt).map(|phc| phc.to_string()).unwrap_or_default()
});

/// Spend the time of one [`verify`] without an account to verify against.
///
/// Call this when a login names an unknown user, so that "unknown user" and
/// "wrong password" take the same time and user names cannot be enumerated
/// by timing. The dummy hash is computed on first use (that first call costs
/// one extra hash); calling this once at start-up moves that cost out of
/// the first login.
pub fn verify_dummy(password: &str) {
    let _ = verify(password, &DUMMY_PHC);
}

/// Whether `phc` was made with another algorithm, version or parameters than
/// [`hash`] uses now, so that the password should be hashed again after its
/// next successful [`verify`]. Also `true` for a string that does not parse.
pub fn needs_rehash(phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return true;
    };
    let Ok(params) = Params::try_from(&parsed) else {
        return true;
    };
    parsed.algorithm != Algorithm::Argon2id.ident()
        || parsed.version != Some(Version::V0x13.into())
        || params != PARAMS
        || parsed.salt.is_none_or(|salt| salt.len() < SALT_LEN)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A list entry of at least 12 characters, for the "common" test.
    const COMMON_LONG: &str = "qwerty123456";

    #[test]
    fn list_is_big_and_holds_the_test_entry() {
        assert!(common_password_count() >= 10_000);
        assert!(COMMON_PASSWORDS_TEXT.lines().any(|line| line == COMMON_LONG));
        assert!(COMMON_PASSWORDS_TEXT.starts_with('#'));
        assert!(!COMMON_PASSWORDS.iter().any(|p| p.starts_with('#')));
    }

    #[test]
    fn policy() {
        assert_eq!(check_policy("short", &[]), Err(PasswordPolicyError::TooShort { min: MIN_LENGTH }));
        assert_eq!(
            check_policy(&"a".repeat(MAX_LENGTH + 1), &[]),
            Err(PasswordPolicyError::TooLong { max: MAX_LENGTH })
        );
        assert_eq!(check_policy(COMMON_LONG, &[]), Err(PasswordPolicyError::Common));
        // Case does not help.
        assert_eq!(check_policy(&COMMON_LONG.to_uppercase(), &[]), Err(PasswordPolicyError::Common));
        if COMMON_PASSWORDS.contains("password1234") {
            assert_eq!(check_policy("password1234", &[]), Err(PasswordPolicyError::Common));
        }
        assert_eq!(
            check_policy("xyz-Dr.Virtanen-2024", &["dr.virtanen", "confidant"]),
            Err(PasswordPolicyError::ContainsContext)
        );
        assert_eq!(
            check_policy("my Confidant login!", &["ann", "confidant"]),
            Err(PasswordPolicyError::ContainsContext)
        );
        // A context string under four characters is ignored.
        assert_eq!(check_policy("annual-Tk7#pQ2vLx", &["ann"]), Ok(()));
        // Length is counted in characters after NFKC, not in bytes.
        assert_eq!(check_policy("äöüßéñøåçłžő", &[]), Ok(()));
        assert_eq!(check_policy("äääääääääää", &[]), Err(PasswordPolicyError::TooShort { min: MIN_LENGTH }));

        let mut raw = [0u8; 12];
        crate::random_bytes(&mut raw).unwrap();
        let random = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, raw);
        assert_eq!(random.chars().count(), 16);
        assert_eq!(check_policy(&random, &["someuser", "confidant"]), Ok(()));
    }

    /// Issue 14: each of these passed the length and list checks.
    #[test]
    fn guessable_passwords_are_refused() {
        for (password, why) in [
            ("123456789012", "sequence"),
            ("aaaaaaaaaaaa", "repeats"),
            ("qwertyuiopas", "common password"),
            ("zxcvbnm,./asdf", ""),
            ("Password1234!", "common password"),
            ("abcdefghijkl", "sequence"),
        ] {
            let refused = check_policy(password, &["someuser", "confidant"]);
            let Err(PasswordPolicyError::TooGuessable { why: found }) = refused else {
                panic!("{password:?} was not refused as guessable: {refused:?}");
            };
            assert!(found.contains(why), "{password:?}: {found}");
            let message = PasswordPolicyError::TooGuessable { why: found }.to_string();
            assert!(!message.to_lowercase().contains(&password.to_lowercase()), "{message}");
            assert!(message.contains("uncommon words"), "says what to do: {message}");
        }
        // Pass phrases and random strings still pass.
        for password in [
            "correct horse battery staple",
            "correct horse battery staple 7",
            "a long and private passphrase",
            "annual-Tk7#pQ2vLx",
            "mauve tractor lifts seven owls",
        ] {
            assert_eq!(check_policy(password, &["someuser", "confidant"]), Ok(()), "{password}");
        }
    }

    #[test]
    fn error_texts_are_actionable() {
        assert_eq!(
            PasswordPolicyError::TooShort { min: 12 }.to_string(),
            "password is too short: use at least 12 characters"
        );
        assert_eq!(
            PasswordPolicyError::Common.to_string(),
            "this password is among the most common passwords; choose another"
        );
    }

    // Three hash() calls at OWASP cost (plus verifications); keep the count small.
    #[test]
    fn hash_verify_rehash() {
        let password = "correct horse battery staple";
        let first = hash(password).unwrap();
        let second = hash(password).unwrap();
        assert!(first.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{first}");
        assert_ne!(first, second, "each hash has its own salt");

        assert!(verify(password, &first));
        assert!(verify(password, &second));
        assert!(!verify("correct horse battery stapler", &first));
        assert!(!needs_rehash(&first));

        // NFKC: the ligature "ﬁ" (U+FB01) and "fi" are the same password.
        let ligature = hash("\u{fb01}ne day for a hike").unwrap();
        assert!(verify("fine day for a hike", &ligature));
    }

    #[test]
    fn garbage_and_hostile_phc_strings() {
        for phc in [
            "",
            "garbage",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo",
            // Absurd memory cost: refused before any allocation.
            "$argon2id$v=19$m=4294967295,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhcw",
        ] {
            assert!(!verify("whatever password", phc), "{phc}");
            assert!(needs_rehash(phc), "{phc}");
        }
        verify_dummy("whatever password");
    }

    #[test]
    fn weaker_parameters_verify_but_need_rehash() {
        let params = Params::new(4096, 1, 1, Some(OUTPUT_LEN)).unwrap();
        let weak = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_with_salt(b"an old password", b"0123456789abcdef")
            .unwrap()
            .to_string();
        assert!(weak.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{weak}");
        assert!(verify("an old password", &weak));
        assert!(needs_rehash(&weak));
    }
}
