//! `xor-node`: the program users run.

// A command-line program reports on its terminal.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc instead of the system allocator: a third of the daemon's CPU time in a
/// message burst went to glibc malloc/free (README Decisions, BENCHMARKS).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use xor_enrollment::client::ClientSettings;
use xor_node::config::{self, NodeFile};

/// A peer-to-peer XMPP node on a RELOAD overlay (RFC 6940, XEP-0415).
#[derive(Parser, Debug)]
#[command(name = "xor-node", version, about)]
struct Cli {
    /// Log level (error, warn, info, debug, trace); RUST_LOG overrides it.
    #[arg(long, global = true)]
    log: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a complete overlay on loopback (enrollment, three users, six devices)
    /// and show them chatting.
    Demo {
        /// Keep running after the script so you can log in with your own client.
        #[arg(long)]
        stay: bool,
    },
    /// Run this device (reads the configuration file; see `config-example`).
    Run {
        /// Configuration file [default: ~/.config/xor/node.toml].
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Show the running device's neighbours, storage, streams and contacts.
    Status {
        /// Configuration file of the running device.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Look a user up in the overlay through the running device.
    Resolve {
        /// The JID to look up.
        jid: String,
        /// Configuration file of the running device.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Enroll this device: fetch the overlay configuration and get a certificate
    /// (RFC 6940 §11). The password is read from XOR_PASSWORD or standard input.
    Enroll {
        /// Your account, user@domain.
        #[arg(long)]
        jid: String,
        /// The overlay name [default: the JID's domain].
        #[arg(long)]
        overlay: Option<String>,
        /// The configuration URL; when given, no DNS SRV lookup is made.
        #[arg(long)]
        config_url: Option<String>,
        /// Where to keep the profile [default: ~/.local/share/xor/profile].
        #[arg(long)]
        profile: Option<PathBuf>,
        /// Extra HTTPS trust anchors (PEM), e.g. a private overlay's root.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Operate an overlay's certificate authority.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Manage the enrollment server's accounts (password from XOR_PASSWORD or stdin).
    Account {
        /// The account file.
        #[arg(long)]
        accounts: PathBuf,
        #[command(subcommand)]
        command: AccountCommand,
    },
    /// Serve the overlay configuration and enroll users (HTTPS).
    EnrollServer {
        /// The CA directory (`ca init`).
        #[arg(long)]
        dir: PathBuf,
        /// The account file.
        #[arg(long)]
        accounts: PathBuf,
        /// Where to listen.
        #[arg(long, default_value = "0.0.0.0:8443")]
        listen: SocketAddr,
    },
    /// Print a configuration file with every option and its default.
    ConfigExample {
        /// Write it to the configuration file (readable by you only) instead; it is
        /// never overwritten.
        #[arg(long)]
        write: bool,
        /// The file to write [default: ~/.config/xor/node.toml].
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum CaCommand {
    /// Create the root CA, configuration signer and web certificate.
    Init {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The overlay name.
        #[arg(long)]
        overlay: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
        /// More names for the web certificate (the enrollment server's host names).
        #[arg(long = "web-name")]
        web_names: Vec<String>,
    },
    /// Create the CA of an XMPP domain.
    Domain {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The domain.
        domain: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: i64,
    },
    /// Revoke a domain's CA (distributed with the next `publish`).
    Revoke {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The domain.
        domain: String,
    },
    /// Sign and write the next configuration document.
    Publish {
        /// The CA directory.
        #[arg(long)]
        dir: PathBuf,
        /// The enrollment URL (https://host:port/enroll).
        #[arg(long)]
        enroll_url: String,
        /// Bootstrap nodes (address:port), repeatable.
        #[arg(long)]
        bootstrap: Vec<SocketAddr>,
    },
}

#[derive(Subcommand, Debug)]
enum AccountCommand {
    /// Create an account or change its password.
    Set {
        /// user@domain.
        user: String,
    },
    /// Remove an account.
    Remove {
        /// user@domain.
        user: String,
    },
    /// Revoke devices of an account: their Node-IDs leave the account (freeing its
    /// device slots) and, with --dir, become bad-node entries of the next `ca publish`.
    Revoke {
        /// user@domain.
        user: String,
        /// The devices' Node-IDs (hex); all of the account's when none is given.
        node_ids: Vec<String>,
        /// The CA directory whose next configuration lists them as bad nodes.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// List the accounts with how many Node-IDs (devices) each holds.
    List,
}

/// What a command failed with: the message `xor-node` prints before exiting 1.
type Failure = Box<dyn std::error::Error>;

fn password() -> Result<String, Failure> {
    if let Ok(p) = std::env::var("XOR_PASSWORD") {
        return Ok(p);
    }
    eprint!("password: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("cannot read the password: {e}"))?;
    let p = line.trim_end_matches(['\r', '\n']).to_owned();
    if p.is_empty() {
        return Err("empty password".into());
    }
    Ok(p)
}

fn load_config(path: Option<PathBuf>) -> Result<NodeFile, Failure> {
    let path = path.unwrap_or_else(config::default_path);
    Ok(NodeFile::load(&path)?)
}

fn logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn dispatch(cli: Cli) -> Result<(), Failure> {
    let level = cli.log.clone();
    let log = |default: &str| logging(level.as_deref().unwrap_or(default));
    match cli.command {
        Command::Demo { stay } => {
            log("warn");
            Ok(xor_node::demo::run(stay).await?)
        }
        Command::Run { config } => {
            let file = load_config(config)?;
            log(&file.log.level);
            Ok(xor_node::cli::run(&file).await?)
        }
        Command::Status { config } => {
            let file = load_config(config)?;
            let out = xor_node::status::ask(&file.control_path(), "status").await?;
            print!("{out}");
            Ok(())
        }
        Command::Resolve { jid, config } => {
            let file = load_config(config)?;
            let out =
                xor_node::status::ask(&file.control_path(), &format!("resolve {jid}")).await?;
            print!("{out}");
            if out.starts_with("error:") {
                return Err(format!("{jid} could not be resolved").into());
            }
            Ok(())
        }
        Command::Enroll {
            jid,
            overlay,
            config_url,
            profile,
            ca,
        } => {
            log("warn");
            let overlay = match overlay {
                Some(o) => o,
                None => xor_enrollment::ca::user_domain(&jid).to_owned(),
            };
            let http_roots = match ca {
                Some(p) => xor_enrollment::files::read_certs(&p)?,
                None => Vec::new(),
            };
            let profile = profile.unwrap_or_else(|| {
                config::expand(std::path::Path::new("~/.local/share/xor/profile"))
            });
            let opts = xor_enrollment::cli::EnrollOptions {
                overlay,
                config_url,
                username: jid.clone(),
                password: password()?,
                node_ids: 1,
                profile: profile.clone(),
                client: ClientSettings {
                    http_roots,
                    ..ClientSettings::default()
                },
            };
            let p = xor_enrollment::cli::enroll_cli(&opts).await?;
            let id = p.credentials.identity();
            println!(
                "enrolled {jid} in overlay {} (Node-ID {}); profile saved to {}",
                opts.overlay,
                id.node_ids
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                profile.display()
            );
            println!(
                "next: write a configuration (`xor-node config-example --write`) and `xor-node run`"
            );
            Ok(())
        }
        Command::Ca { command } => {
            let out = match command {
                CaCommand::Init {
                    dir,
                    overlay,
                    days,
                    web_names,
                } => xor_enrollment::cli::ca_init(&dir, &overlay, days, &web_names),
                CaCommand::Domain { dir, domain, days } => {
                    xor_enrollment::cli::ca_domain(&dir, &domain, days)
                }
                CaCommand::Revoke { dir, domain } => xor_enrollment::cli::ca_revoke(&dir, &domain),
                CaCommand::Publish {
                    dir,
                    enroll_url,
                    bootstrap,
                } => {
                    let overlay = xor_enrollment::ca::CaDir::open(&dir)?.overlay().to_owned();
                    let template =
                        xor_node::devnet::xmpp_template(&overlay, &enroll_url, &bootstrap);
                    xor_enrollment::cli::ca_publish(&dir, &template)
                }
            }?;
            println!("{out}");
            Ok(())
        }
        Command::Account { accounts, command } => {
            let file = xor_enrollment::accounts::FileAccounts::open(&accounts)?;
            match command {
                AccountCommand::Set { user } => {
                    let user = xor_enrollment::ca::prepare_user_name(&user)?;
                    file.set_password(&user, &password()?)?;
                    println!("password of {user} set");
                }
                AccountCommand::Remove { user } => {
                    let user = xor_enrollment::ca::prepare_user_name(&user)?;
                    if !file.remove(&user)? {
                        return Err(format!("no account {user}").into());
                    }
                    println!("removed {user}");
                }
                AccountCommand::Revoke {
                    user,
                    node_ids,
                    dir,
                } => {
                    use xor_enrollment::accounts::AccountStore;
                    let user = xor_enrollment::ca::prepare_user_name(&user)?;
                    let ids = if node_ids.is_empty() {
                        file.node_ids(&user)
                    } else {
                        node_ids
                            .iter()
                            .map(|h| {
                                let b: [u8; 16] = hex::decode(h)
                                    .ok()
                                    .and_then(|b| b.try_into().ok())
                                    .ok_or_else(|| {
                                        format!("{h} is not a Node-ID (32 hex digits)")
                                    })?;
                                Ok(xor_overlay::id::NodeId::from_bytes(b))
                            })
                            .collect::<Result<Vec<_>, Failure>>()?
                    };
                    let removed = file.remove_node_ids(&user, &ids)?;
                    println!(
                        "{user}: {removed} of {} Node-IDs removed from the account",
                        ids.len()
                    );
                    if let Some(dir) = dir {
                        xor_enrollment::ca::CaDir::open(&dir)
                            .and_then(|ca| ca.revoke_nodes(&ids))?;
                        println!(
                            "listed as bad nodes; run `ca publish` to distribute the revocation"
                        );
                    }
                }
                AccountCommand::List => {
                    use xor_enrollment::accounts::AccountStore;
                    for u in file.users() {
                        println!("{u} ({} Node-IDs)", file.node_ids(&u).len());
                    }
                }
            }
            Ok(())
        }
        Command::EnrollServer {
            dir,
            accounts,
            listen,
        } => {
            log("info");
            let opts = xor_enrollment::cli::EnrollServerOptions {
                ca_dir: dir,
                accounts,
                settings: xor_enrollment::server::ServerSettings {
                    listen,
                    ..Default::default()
                },
            };
            let server = xor_enrollment::cli::enroll_server(&opts).await?;
            println!(
                "enrollment server listening on https://{}; Ctrl-C stops",
                server.local_addr()
            );
            xor_node::cli::terminated().await;
            server.shutdown();
            Ok(())
        }
        Command::ConfigExample { write, config } => {
            if !write {
                print!("{}", config::EXAMPLE);
                return Ok(());
            }
            let path = config.unwrap_or_else(config::default_path);
            config::write_private(&path, config::EXAMPLE)?;
            println!(
                "wrote {} (readable by you only); set [client] password, then `xor-node run`",
                path.display()
            );
            Ok(())
        }
    }
}

/// One thread runs everything (README Decisions): a daemon's work is small steps on
/// many sockets, and one thread spends less CPU per message and wakes less often than
/// a pool handing work between threads.
fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("xor-node: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(dispatch(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xor-node: {e}");
            ExitCode::FAILURE
        }
    }
}
