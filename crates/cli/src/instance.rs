//! `confidant init|serve|token`: the app does it; this prints it.

use std::path::Path;

use anyhow::Result;
use confidant_app::Console;
use confidant_app::config::{Database, KeyProvider};
use confidant_app::instance::{self, InitOptions};

/// `confidant init`.
pub async fn init(console: &Console, dir: &Path, options: InitOptions) -> Result<()> {
    let made = instance::init(console, dir, options).await?;
    println!("Created a Confidant instance in {}", dir.display());
    println!("  instance id:  {}", made.config.instance_id);
    println!(
        "  database:     {}",
        if matches!(made.config.database, Database::Sqlite { .. }) { "SQLite (embedded)" } else { "PostgreSQL" }
    );
    match &made.config.keys.provider {
        KeyProvider::Pkcs11 { token, .. } => {
            println!("  key:          in the PKCS#11 token '{token}' (not extractable)")
        }
        _ => println!("  key file:     {} (mode 0600)", made.key_file.display()),
    }
    println!("  audit key:    {}", confidant_app::audit::describe_signing_key(&made.config));
    println!("  audit public key (write it down; `audit verify --public-key` checks against it):");
    println!("                {}", made.audit_public_key);
    println!();
    println!("Next:");
    println!(
        "  1. Back up the key file and the audit key now, apart from the data. Without the key file the data cannot be read."
    );
    println!("  2. Create the first administrator, either here:");
    println!("       confidant user add --dir {} --username NAME --role admin", dir.display());
    println!("     or in the web UI at /enrol (or POST /api/v1/enrol) with this one-time code (valid 7 days):");
    println!("       {}", made.enrolment_code);
    println!("  3. Start the server:      confidant serve --dir {}", dir.display());
    println!("  4. Open the web UI at the address serve prints (or server.public_url), e.g. http://127.0.0.1:8080/ —");
    println!("     the first administrator signs in (or enrols at /enrol with the code) and sets up a second factor;");
    println!("     staff cannot work without one. Then invite the staff from the admin pages.");
    println!("  Run a real clinic (HTTPS, the service unit, backups): docs/admin.md, \"Run a real clinic\".");
    Ok(())
}

/// Printed once the server serves: scripts and tests wait for this line.
pub fn announce(url: &str) {
    println!("listening on {url}");
}

/// `confidant serve`.
pub async fn serve(console: &Console, dir: &Path, listen: Option<String>, no_backup: bool) -> Result<()> {
    let upgrade = if no_backup { instance::Upgrade::NoBackup } else { instance::Upgrade::BackupFirst };
    instance::serve(console, dir, listen, upgrade, &crate::progress::Stderr, announce).await
}

/// `confidant token create`: the token on stdout, the rest on stderr.
pub async fn token_create(console: &Console, dir: &Path, new: instance::NewToken<'_>) -> Result<()> {
    let user = new.user;
    let (id, token) = instance::token_create(console, dir, new).await?;
    println!("{token}");
    eprintln!("Token {id} created for {user}. It is shown only this once; store it in the client's secret store.");
    eprintln!(
        "Use it as:  Authorization: Bearer <token>.  Revoke with: confidant token revoke --dir {} --id {id}",
        dir.display()
    );
    Ok(())
}

/// `confidant token list`.
pub async fn token_list(console: &Console, dir: &Path) -> Result<()> {
    let tokens = instance::token_list(console, dir).await?;
    println!("{:<14} {:<8} {:<34} {:<26} {:<26} scopes / label", "id", "status", "user", "created", "expires");
    for t in tokens {
        println!(
            "{:<14} {:<8} {:<34} {:<26} {:<26} {} / {}",
            t.id,
            t.status,
            t.user_id.as_deref().unwrap_or("-"),
            confidant_fhir::instant(t.created_at),
            t.expires_at.map(confidant_fhir::instant).unwrap_or_else(|| "-".into()),
            t.scopes.as_deref().unwrap_or("-"),
            t.label
        );
    }
    Ok(())
}

/// `confidant token revoke`.
pub async fn token_revoke(console: &Console, dir: &Path, id: &str) -> Result<()> {
    instance::token_revoke(console, dir, id).await?;
    println!("Token {id} revoked.");
    Ok(())
}
