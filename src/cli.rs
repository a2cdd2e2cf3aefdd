//! The `spanglish` command line: serve (the default), migrate, create-admin
//! and export-schema.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::accounts::service::create_or_promote_admin;
use crate::app::App;
use crate::config::Config;
use crate::{db, graphql, telemetry};

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
    if let Some(Command::ExportSchema) = cli.command {
        print!("{}", graphql::sdl());
        return Ok(());
    }

    let config = Config::load(&cli.config_dir)?;
    // Lives until the command ends, so errors of the last moments are sent.
    let _telemetry = telemetry::init(&config);

    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => App::build(config).await?.serve().await,
        Command::Migrate => {
            let db = db::connect(&config.database_url(), 1)
                .await
                .context("connecting to the database")?;
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
        Command::ExportSchema => Ok(()),
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
