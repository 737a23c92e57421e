//! The command line and `PIER_*` environment, parsed once into typed configuration.

use std::{net::SocketAddr, path::PathBuf};

use clap::{builder::BoolishValueParser, ArgAction, Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pier",
    version,
    about = "Pier: a self-hosted container panel for friends"
)]
pub struct Cli {
    /// Where Pier keeps its database, secret key and generated files.
    #[arg(
        long,
        env = "PIER_DATA_DIR",
        default_value = "/var/lib/pier",
        global = true
    )]
    pub data_dir: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the panel.
    Serve(Box<ServeArgs>),
    /// Operator tasks on users.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Personal access tokens for the REST API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Back Pier itself up now (its database and secret key; `serve` does daily), or set the
    /// passphrase that opens the backups on a new machine.
    Backup {
        #[command(subcommand)]
        command: Option<BackupCommand>,
    },
    /// Bring a whole Pier back from its backups onto this machine (an empty data directory);
    /// then `pier serve` recreates the apps, their volumes from their latest snapshots.
    Restore {
        /// The backup repository: a directory (copied into place) or a restic location.
        #[arg(long)]
        from: String,
        /// A Pier backup's id (default: the latest).
        #[arg(long)]
        snapshot: Option<String>,
        /// Read the passphrase from standard input (required).
        #[arg(long, required = true)]
        passphrase_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Back Pier up now (the default).
    Now,
    /// Add a passphrase that opens the backup repository without the secret key (read from
    /// standard input; at least 12 characters). Keep it apart from this machine.
    Passphrase {
        /// Read the passphrase from standard input (required).
        #[arg(long, required = true)]
        passphrase_stdin: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for a user and print it on standard output (shown once).
    Create {
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// read, write or admin (admin only for admins).
        #[arg(long, default_value = "write")]
        scope: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create an admin. The password is read from standard input, never from the command line.
    Create {
        #[arg(long)]
        email: String,
        /// Read the password from standard input (required).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Remove a person's authenticator and recovery codes (they lost both): their password
    /// alone signs them in, and where two factors are required they set one up again at once.
    ResetTwoFactor {
        #[arg(long)]
        email: String,
    },
}

/// Which engine runs the apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineMode {
    Auto,
    Docker,
    Swarm,
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The panel's own HTTP address.
    #[arg(long, env = "PIER_LISTEN", default_value = "127.0.0.1:3000")]
    pub listen: SocketAddr,

    /// Apps also get `<app>-<tenant>.<base domain>`.
    #[arg(long, env = "PIER_BASE_DOMAIN", value_parser = parse_host)]
    pub base_domain: Option<String>,

    /// The host name the panel is served at (through HAProxy, over HTTPS).
    #[arg(long, env = "PIER_PANEL_HOST", value_parser = parse_host)]
    pub panel_host: Option<String>,

    /// Where HAProxy takes plain HTTP (redirects to HTTPS, ACME challenges).
    #[arg(long, env = "PIER_HTTP_ADDR", default_value = "0.0.0.0:80")]
    pub http_addr: SocketAddr,

    /// Where HAProxy serves HTTPS for the panel and every app.
    #[arg(long, env = "PIER_HTTPS_ADDR", default_value = "0.0.0.0:443")]
    pub https_addr: SocketAddr,

    /// Run without HAProxy (apps are reachable on their loopback ports only).
    #[arg(long, env = "PIER_NO_PROXY", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_proxy: bool,

    /// This server's public addresses (comma-separated), so DNS checks can say "points here".
    #[arg(long, env = "PIER_PUBLIC_ADDRS", value_delimiter = ',')]
    pub public_addrs: Vec<std::net::IpAddr>,

    /// Ask this DNS server (ip:port) for DNS checks instead of the system's resolvers.
    #[arg(long, env = "PIER_DNS_SERVER")]
    pub dns_server: Option<SocketAddr>,

    /// The ACME directory certificates come from (Let's Encrypt's production by default; its
    /// staging directory or any other CA's URL work too).
    #[arg(long, env = "PIER_ACME_DIRECTORY", default_value = pier_core::certs::LETS_ENCRYPT)]
    pub acme_directory: String,

    /// The contact address of the ACME account (the CA's expiry notices go there).
    #[arg(long, env = "PIER_ACME_EMAIL", value_parser = parse_email)]
    pub acme_email: Option<String>,

    /// An extra root certificate (PEM) to trust for the ACME directory itself (test CAs).
    #[arg(long, env = "PIER_ACME_CA_FILE")]
    pub acme_ca_file: Option<PathBuf>,

    /// Do not obtain certificates (HTTPS keeps the self-signed one).
    #[arg(long, env = "PIER_NO_ACME", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_acme: bool,

    /// How often an app that follows its image tag asks its registry for the tag's digest, in
    /// hours (1–168; each app is spread ±10 % around it).
    #[arg(long, env = "PIER_TAG_CHECK_HOURS", default_value_t = 6, value_parser = clap::value_parser!(i64).range(1..=168))]
    pub tag_check_hours: i64,

    /// Serve Prometheus metrics at `/metrics` on this address (off unless set; keep it on
    /// loopback or a private network: the endpoint has no authentication).
    #[arg(long, env = "PIER_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,

    /// Let webhooks go to private networks and this machine (a receiver on the LAN). Off by
    /// default: a tenant's webhook URL could otherwise reach services only the server sees.
    #[arg(long, env = "PIER_NOTIFY_ALLOW_PRIVATE_WEBHOOKS", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub notify_allow_private_webhooks: bool,

    /// Do not write the audit log (for measuring what it costs; the admin page says it is
    /// off). Changes are then recorded nowhere but the process log.
    #[arg(long, env = "PIER_NO_AUDIT_LOG", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_audit_log: bool,

    /// Attach and certify tenants' domains without asking them to prove ownership with a TXT
    /// record first (only where every tenant is trusted with every name pointing here).
    #[arg(long, env = "PIER_NO_DOMAIN_PROOF", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub no_domain_proof: bool,

    /// Let tenants register wildcard domains (`*.example.com`).
    #[arg(long, env = "PIER_ALLOW_WILDCARD_DOMAINS", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub allow_wildcard_domains: bool,

    /// The built site (wasm, JS, CSS) from `cargo leptos build`.
    #[arg(long, env = "PIER_SITE_ROOT", default_value = "target/site")]
    pub site_root: PathBuf,

    /// Which engine runs the apps: `docker` (containers on this machine), `swarm` (Swarm
    /// services over every machine of the Swarm this engine manages) or `auto` (swarm when the
    /// engine is a Swarm manager at start, else docker).
    #[arg(long, env = "PIER_ENGINE", value_enum, default_value = "auto")]
    pub engine: EngineMode,

    /// On a Swarm: encrypt tenants' overlay networks between machines (IPsec; costs CPU).
    #[arg(long, env = "PIER_SWARM_ENCRYPT", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub swarm_encrypt: bool,

    /// Tenants' containers may not reach private address ranges either (only their own
    /// network, and the internet).
    #[arg(long, env = "PIER_EGRESS_BLOCK_PRIVATE", value_parser = BoolishValueParser::new(), action = ArgAction::SetTrue)]
    pub egress_block_private: bool,

    /// Only pull images from these registries (comma-separated `host[:port]`); empty: any.
    #[arg(long, env = "PIER_ALLOWED_REGISTRIES", value_delimiter = ',', value_parser = parse_registry)]
    pub allowed_registries: Vec<String>,

    /// Only copy backups to S3 endpoints at these hosts (comma-separated `host[:port]`); empty:
    /// any the admin sets.
    #[arg(long, env = "PIER_BACKUP_TARGET_HOSTS", value_delimiter = ',', value_parser = parse_registry)]
    pub backup_target_hosts: Vec<String>,

    /// Only send notifications (webhooks, the mail server) to these hosts (comma-separated
    /// `host[:port]`); empty: any public host. A host listed here may be a private address.
    #[arg(long, env = "PIER_NOTIFY_HOSTS", value_delimiter = ',', value_parser = parse_registry)]
    pub notify_hosts: Vec<String>,

    /// An extra root certificate (PEM) to trust for the mail server (a private CA).
    #[arg(long, env = "PIER_SMTP_CA_FILE")]
    pub smtp_ca_file: Option<PathBuf>,
}

fn parse_registry(s: &str) -> Result<String, String> {
    pier_core::validate::registry_host(s)
}

fn parse_email(s: &str) -> Result<String, String> {
    pier_core::validate::email(s)
}

fn parse_host(s: &str) -> Result<String, String> {
    pier_core::validate::hostname(s)
}

impl ServeArgs {
    /// `https://<panel host>` when the panel has a public name; invite links use it.
    pub fn public_origin(&self) -> Option<String> {
        self.panel_host.as_ref().map(|h| format!("https://{h}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parsing reads the process's environment, which one test here changes: the tests that
    /// parse take turns (tests run side by side).
    fn environment() -> std::sync::MutexGuard<'static, ()> {
        static ENV: std::sync::Mutex<()> = std::sync::Mutex::new(());
        ENV.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[test]
    fn parses_serve_and_rejects_bad_hosts() {
        let _env = environment();
        let cli = Cli::try_parse_from([
            "pier",
            "--data-dir",
            "/tmp/p",
            "serve",
            "--listen",
            "127.0.0.1:4000",
        ])
        .unwrap();
        match cli.command {
            Command::Serve(a) => {
                assert_eq!(a.listen.port(), 4000);
                assert_eq!(a.public_origin(), None);
            }
            _ => panic!("not serve"),
        }
        assert!(Cli::try_parse_from(["pier", "serve", "--panel-host", "bad host\n"]).is_err());
        let cli = Cli::try_parse_from([
            "pier",
            "serve",
            "--allowed-registries",
            "GHCR.io,127.0.0.1:5123",
        ])
        .unwrap();
        let Command::Serve(a) = cli.command else {
            panic!()
        };
        assert_eq!(a.allowed_registries, ["ghcr.io", "127.0.0.1:5123"]);
        assert!(Cli::try_parse_from(["pier", "serve", "--allowed-registries", "a b"]).is_err());
        let cli =
            Cli::try_parse_from(["pier", "serve", "--panel-host", "Panel.Example.com"]).unwrap();
        let Command::Serve(a) = cli.command else {
            panic!()
        };
        assert_eq!(
            a.public_origin().as_deref(),
            Some("https://panel.example.com")
        );
    }

    #[test]
    fn boolean_settings_take_the_usual_spellings() {
        let _env = environment();
        // Only this test sets this variable.
        for (value, expected) in [
            ("1", true),
            ("true", true),
            ("yes", true),
            ("on", true),
            ("0", false),
            ("false", false),
            ("no", false),
            ("off", false),
        ] {
            std::env::set_var("PIER_EGRESS_BLOCK_PRIVATE", value);
            let cli =
                Cli::try_parse_from(["pier", "serve"]).unwrap_or_else(|e| panic!("{value}: {e}"));
            let Command::Serve(a) = cli.command else {
                panic!()
            };
            assert_eq!(a.egress_block_private, expected, "{value}");
        }
        std::env::set_var("PIER_EGRESS_BLOCK_PRIVATE", "maybe");
        assert!(Cli::try_parse_from(["pier", "serve"]).is_err());
        std::env::remove_var("PIER_EGRESS_BLOCK_PRIVATE");
    }

    #[test]
    fn admin_create_needs_password_stdin() {
        let _env = environment();
        assert!(Cli::try_parse_from(["pier", "admin", "create", "--email", "a@b.co"]).is_err());
        assert!(Cli::try_parse_from([
            "pier",
            "admin",
            "create",
            "--email",
            "a@b.co",
            "--password-stdin"
        ])
        .is_ok());
    }
}
