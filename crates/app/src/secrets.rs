//! Passphrases and PINs: from an environment variable, from a file
//! descriptor named by one, or from a prompt on the terminal — never from the
//! command line. Each is read once per process (a descriptor can be read only once).

use anyhow::{Context, Result, bail};

pub type Secret = zeroize::Zeroizing<String>;

/// Read a secret once per process (a descriptor can be read only once).
fn read_once(cell: &'static std::sync::OnceLock<Secret>, var: &str, fd_var: &str, prompt: &str) -> Result<Secret> {
    if let Some(p) = cell.get() {
        return Ok(p.clone());
    }
    let p = read_secret(var, fd_var, prompt)?;
    Ok(cell.get_or_init(|| p).clone())
}

/// The PIN of the PKCS#11 token: from CONFIDANT_PKCS11_PIN, from the descriptor
/// named by CONFIDANT_PKCS11_PIN_FD, or from a prompt.
pub fn pkcs11_pin() -> Result<Secret> {
    static READ: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
    read_once(&READ, "CONFIDANT_PKCS11_PIN", "CONFIDANT_PKCS11_PIN_FD", "PIN of the PKCS#11 token: ")
}

/// The passphrase of a sealed key file: from CONFIDANT_PASSPHRASE, from the
/// descriptor named by CONFIDANT_PASSPHRASE_FD, or from a prompt. Never from the command line.
pub fn passphrase() -> Result<Secret> {
    static READ: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
    read_once(&READ, "CONFIDANT_PASSPHRASE", "CONFIDANT_PASSPHRASE_FD", "Passphrase of the key file: ")
}

/// A secret from the environment variable `var`, from the descriptor named by
/// `fd_var`, or from a prompt — never from the command line.
fn read_secret(var: &str, fd_var: &str, prompt: &str) -> Result<zeroize::Zeroizing<String>> {
    if let Ok(p) = std::env::var(var) {
        return Ok(zeroize::Zeroizing::new(p));
    }
    if let Ok(fd) = std::env::var(fd_var) {
        let fd: u32 = fd.trim().parse().with_context(|| format!("{fd_var} must be a file descriptor number"))?;
        let mut line = zeroize::Zeroizing::new(String::new());
        let f = std::fs::File::open(format!("/dev/fd/{fd}"))
            .with_context(|| format!("cannot read the passphrase from file descriptor {fd}"))?;
        std::io::BufRead::read_line(&mut std::io::BufReader::new(f), &mut line)?;
        return Ok(zeroize::Zeroizing::new(line.trim_end_matches(['\n', '\r']).to_owned()));
    }
    let p = rpassword::prompt_password(prompt)
        .with_context(|| format!("cannot read the passphrase or PIN: set {var} or {fd_var}, or run from a terminal"))?;
    Ok(zeroize::Zeroizing::new(p))
}

/// A new passphrase for `init --passphrase`: asked twice at a prompt; it must pass the password policy.
pub fn new_passphrase() -> Result<zeroize::Zeroizing<String>> {
    let p = read_secret(
        "CONFIDANT_PASSPHRASE",
        "CONFIDANT_PASSPHRASE_FD",
        "New passphrase for the key file (at least 12 characters): ",
    )?;
    if std::env::var_os("CONFIDANT_PASSPHRASE").is_none() && std::env::var_os("CONFIDANT_PASSPHRASE_FD").is_none() {
        let again = rpassword::prompt_password("Again: ").context("cannot read the passphrase")?;
        if again != *p {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    confidant_vault::password::check_policy(&p, &["confidant"])
        .map_err(|e| anyhow::anyhow!("passphrase refused: {e}; nothing was created"))?;
    Ok(p)
}
