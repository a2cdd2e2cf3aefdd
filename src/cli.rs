//! The `spanglish` command line: serve (the default), migrate, create-admin,
//! export-schema, payments, backup, restore and backup-keygen.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::accounts::service::create_or_promote_admin;
use crate::app::App;
use crate::config::Config;
use crate::{backup, db, graphql, telemetry};

#[derive(Parser)]
#[command(name = "spanglish", version, about = "The Spanglish API server")]
struct Cli {
    /// Folder of default.toml and <APP_ENV>.toml.
    #[arg(long, env = "CONFIG_DIR", default_value = "config", global = true)]
    config_dir: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Migrate the database, then serve (the default).
    Serve,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create an ADMIN, or promote an existing account. The password comes
    /// from ADMIN_PASSWORD, or is asked for on the terminal.
    CreateAdmin {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
    },
    /// Print the GraphQL SDL (the same as schema.graphql).
    ExportSchema,
    /// Payment maintenance.
    Payments {
        #[command(subcommand)]
        command: PaymentsCommand,
    },
    /// Write an encrypted backup of every table, from one consistent
    /// snapshot, to a file or to s3://bucket/key. It is encrypted to
    /// BACKUP_RECIPIENT.
    Backup {
        #[arg(long, value_name = "PATH|s3://BUCKET/KEY")]
        to: String,
    },
    /// Load a backup into the empty database of DATABASE_URL (SQLite or
    /// PostgreSQL, whatever the backup came from), all or nothing. It is
    /// opened with BACKUP_IDENTITY.
    Restore {
        #[arg(long, value_name = "PATH|s3://BUCKET/KEY")]
        from: String,
    },
    /// Print a new age identity for backups (keep it offline; it is what
    /// BACKUP_IDENTITY gives a restore) and, on stderr, the recipient to set
    /// as BACKUP_RECIPIENT.
    BackupKeygen,
}

#[derive(Subcommand)]
enum PaymentsCommand {
    /// Ask the providers about payments still pending after a few minutes
    /// (for webhooks that never arrived), retry interrupted refunds, and
    /// refund tickets that did not stand.
    Reconcile,
}

pub async fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("spanglish: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::ExportSchema) => {
            print!("{}", graphql::sdl());
            return Ok(());
        }
        Some(Command::BackupKeygen) => {
            let (identity, recipient) = backup::crypto::keygen(chrono::Utc::now());
            print!("{identity}");
            eprintln!("BACKUP_RECIPIENT={recipient}");
            return Ok(());
        }
        _ => {}
    }

    let config = Config::load(&cli.config_dir)?;
    // Lives until the command ends, so errors of the last moments are sent.
    let _telemetry = telemetry::init(&config);

    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => App::build(config).await?.serve().await,
        Command::Migrate => {
            let db = connect(&config).await?;
            db::migrate(&db).await.context("migrating")?;
            println!("migrations applied");
            Ok(())
        }
        Command::CreateAdmin { email, name } => {
            let password = admin_password()?;
            let app = App::build(config).await?;
            let admin = create_or_promote_admin(&app.state, &email, &name, &password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{} is an ADMIN (id {})", admin.email, admin.id);
            Ok(())
        }
        Command::ExportSchema | Command::BackupKeygen => Ok(()),
        Command::Backup { to } => {
            let to = backup::Location::parse(&to)?;
            let db = connect(&config).await?;
            let summary = backup::backup(&db, &to, &config).await?;
            println!(
                "backed up {} rows of {} tables to {}",
                summary.rows(),
                summary.counts.len(),
                summary.location
            );
            Ok(())
        }
        Command::Restore { from } => {
            let from = backup::Location::parse(&from)?;
            let db = connect(&config).await?;
            let summary = backup::restore(&db, &from, &config).await?;
            let made = summary
                .header
                .as_ref()
                .map(|h| {
                    let made = h.created_at.format("%Y-%m-%d %H:%M:%S UTC");
                    format!(" (made {made} by spanglish {})", h.app_version)
                })
                .unwrap_or_default();
            println!(
                "restored {} rows of {} tables from {}{made}",
                summary.rows(),
                summary.counts.len(),
                summary.location
            );
            Ok(())
        }
        Command::Payments {
            command: PaymentsCommand::Reconcile,
        } => {
            let app = App::build(config).await?;
            let report = crate::payments::reconcile::run(&app.state)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "checked {} pending payments, changed {}, refunds {}, failures {}",
                report.checked, report.changed, report.refunds, report.failures
            );
            anyhow::ensure!(
                report.failures == 0,
                "some payments could not be reconciled; see the log"
            );
            Ok(())
        }
    }
}

async fn connect(config: &Config) -> anyhow::Result<db::Db> {
    db::connect(&config.database_url(), 2)
        .await
        .context("connecting to the database")
}

fn admin_password() -> anyhow::Result<String> {
    if let Ok(password) = std::env::var("ADMIN_PASSWORD") {
        return Ok(password);
    }
    let first = rpassword::prompt_password("Password for the admin: ")
        .context("reading the password from the terminal (or set ADMIN_PASSWORD)")?;
    let second = rpassword::prompt_password("Again: ").context("reading the password")?;
    anyhow::ensure!(first == second, "the two passwords differ");
    Ok(first)
}
