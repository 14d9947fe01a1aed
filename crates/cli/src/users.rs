//! `confidant user ...`: staff and patient accounts, from the server's shell.

use std::io::BufRead;
use std::path::Path;

use anyhow::{Context, Result, bail};
use confidant_app::Console;
use confidant_app::instance::Instance;
use confidant_fhir::ResourceType;
use confidant_policy::Role;
use serde_json::json;

/// The roles `user add --role` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RoleArg {
    Admin,
    Clinician,
    Reception,
    Auditor,
    Patient,
}

impl From<RoleArg> for Role {
    fn from(r: RoleArg) -> Role {
        match r {
            RoleArg::Admin => Role::Admin,
            RoleArg::Clinician => Role::Clinician,
            RoleArg::Reception => Role::Reception,
            RoleArg::Auditor => Role::Auditor,
            RoleArg::Patient => Role::Patient,
        }
    }
}

/// Read a password: one line from stdin with `--password-stdin`, else an
/// unechoed prompt, twice. Never from the command line.
fn read_password(from_stdin: bool) -> Result<String> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).context("cannot read the password from stdin")?;
        return Ok(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    let a = rpassword::prompt_password("Password (at least 12 characters): ").context("cannot read the password")?;
    let b = rpassword::prompt_password("Again: ").context("cannot read the password")?;
    if a != b {
        bail!("the two passwords differ; nothing was changed");
    }
    Ok(a)
}

#[allow(clippy::too_many_arguments)]
pub async fn add(
    console: &Console,
    dir: &Path,
    username: &str,
    role: RoleArg,
    name: Option<&str>,
    practitioner: Option<&str>,
    patient: Option<&str>,
    password_stdin: bool,
) -> Result<()> {
    let role = Role::from(role);
    let password = zeroize::Zeroizing::new(read_password(password_stdin)?);
    // Check the password before anything is created.
    let lower = username.trim().to_lowercase();
    confidant_vault::password::check_policy(&password, &[&lower, "confidant"])
        .map_err(|e| anyhow::anyhow!("{e}; nothing was changed"))?;
    let Instance { records, identity, .. } = Instance::open(console, dir).await?;
    let result = async {
        let mut practitioner = practitioner.map(str::to_owned);
        if role == Role::Clinician && practitioner.is_none() {
            let Some(name) = name else {
                bail!("a clinician needs --practitioner ID, or --name \"Given Family\" to create their Practitioner record");
            };
            let mut parts: Vec<&str> = name.split_whitespace().collect();
            let family = parts.pop().context("--name needs at least a family name")?;
            let p = records
                .create(
                    &Console::principal(),
                    ResourceType::Practitioner,
                    json!({"resourceType": "Practitioner", "active": true, "name": [{"family": family, "given": parts}]}),
                )
                .await?;
            practitioner = Some(p.id);
        }
        let id = identity.add_user(username, role, &password, practitioner.as_deref(), patient).await?;
        Ok((id, practitioner))
    }
    .await;
    records.store().close().await;
    let (id, practitioner) = result?;
    println!("User {id} added with role {role}.");
    if let Some(p) = practitioner {
        println!("Linked to Practitioner/{p}.");
    }
    if role.is_staff() {
        println!("At first login they enrol a second factor (TOTP); until then they can do nothing else.");
    }
    Ok(())
}

pub async fn list(console: &Console, dir: &Path) -> Result<()> {
    let Instance { records, identity, .. } = Instance::open(console, dir).await?;
    let users = identity.list_users().await;
    records.store().close().await;
    println!("{:<34} {:<24} {:<10} {:<5} {:<9} linked to", "id", "username", "role", "mfa", "status");
    for u in users? {
        let status = if u.disabled {
            "disabled"
        } else if u.locked {
            "locked"
        } else {
            "active"
        };
        let linked = match (&u.practitioner_id, &u.patient_id) {
            (Some(p), _) => format!("Practitioner/{p}"),
            (_, Some(p)) => format!("Patient/{p}"),
            _ => "-".into(),
        };
        println!(
            "{:<34} {:<24} {:<10} {:<5} {:<9} {linked}",
            u.id,
            u.username,
            u.role.as_str(),
            if u.mfa_enrolled { "yes" } else { "no" },
            status
        );
    }
    Ok(())
}

/// What `user disable|enable|reset-mfa|unlock` do.
#[derive(Debug, Clone, Copy)]
pub enum Change {
    Disable,
    Enable,
    ResetMfa,
    Unlock,
}

pub async fn change(console: &Console, dir: &Path, user: &str, change: Change) -> Result<()> {
    let Instance { records, identity, .. } = Instance::open(console, dir).await?;
    let result = match change {
        Change::Disable => {
            identity.disable(user).await.map(|_| format!("{user} disabled; their sessions and tokens are revoked."))
        }
        Change::Enable => identity.enable(user).await.map(|_| format!("{user} enabled.")),
        Change::ResetMfa => identity.reset_mfa(user).await.map(|code| {
            format!(
                "{user}'s second factor, passkeys and recovery codes removed; their sessions and tokens are revoked.\n\
                 Give them this one-time code in person or by phone (it is shown only now):\n\n    {code}\n\n\
                 They sign in with their password and this code in place of an authenticator code, then set up a new second factor."
            )
        }),
        Change::Unlock => identity
            .unlock(user)
            .await
            .map(|was| if was { format!("{user} unlocked.") } else { format!("{user} was not locked.") }),
    };
    records.store().close().await;
    println!("{}", result?);
    Ok(())
}

/// `user supervise`: put a clinician in training under a supervisor (another
/// clinician), or end it (`supervisor` `None`). Audited; the records service
/// decides, as for the admin's page.
pub async fn supervise(console: &Console, dir: &Path, user: &str, supervisor: Option<&str>) -> Result<()> {
    let Instance { records, identity, .. } = Instance::open(console, dir).await?;
    let practitioner = async |name: &str| -> Result<String> {
        let u = identity.find_user(name).await.with_context(|| format!("no account {name}"))?;
        match (u.role.as_str(), u.practitioner_id) {
            ("clinician", Some(p)) => Ok(p),
            _ => bail!("{name} is not a clinician linked to a practitioner; nothing was changed"),
        }
    };
    let result = async {
        let trainee = practitioner(user).await?;
        let supervisor = match supervisor {
            Some(s) => Some(practitioner(s).await?),
            None => None,
        };
        records.set_supervisor(&Console::principal(), &trainee, supervisor.as_deref()).await?;
        Ok::<_, anyhow::Error>(match supervisor {
            Some(_) => format!("{user} is in training: the notes they sign wait for their supervisor's co-signature."),
            None => format!("{user} is no longer in training."),
        })
    }
    .await;
    records.store().close().await;
    println!("{}", result?);
    Ok(())
}
