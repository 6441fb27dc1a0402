//! The C2S fallback (XEP-0415 "Interaction with XMPP Core"): when the overlay cannot
//! find a recipient or reach any of its devices, and the user configured an ordinary
//! XMPP account, the stanza goes through that account's server. The overlay stays
//! primary: only what it could not deliver takes this path. Stanzas the server sends
//! to the account are handed to the user's client like any other.

use minidom::Element;
use tokio::sync::{mpsc, oneshot};
use xor_xmpp::stanza;

use crate::c2s_client::{C2sClient, ClientError, ClientOptions};

type Job = (Element, oneshot::Sender<Result<(), FallbackError>>);

/// Why a stanza did not go out through the fallback server.
#[derive(Debug, thiserror::Error)]
pub enum FallbackError {
    /// Connecting and logging in failed.
    #[error("cannot reach the fallback server: {0}")]
    Connect(ClientError),
    /// Writing the stanza failed (the connection is opened again on next use).
    #[error("the fallback connection failed: {0}")]
    Send(ClientError),
    /// The fallback task has stopped.
    #[error("the fallback task stopped")]
    Stopped,
}

/// A handle on the fallback connection.
#[derive(Debug, Clone)]
pub struct Fallback {
    jobs: mpsc::Sender<Job>,
    account: String,
}

impl Fallback {
    /// Starts the fallback task for `options`; stanzas the server sends arrive on
    /// `inbound`. It connects on first use and reconnects after a failure.
    pub fn start(options: ClientOptions, inbound: mpsc::Sender<Element>) -> Fallback {
        let (jobs, rx) = mpsc::channel(256);
        let account = options.jid.to_string();
        tokio::spawn(run(options, rx, inbound));
        Fallback { jobs, account }
    }

    /// The fallback account.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Sends `el` through the fallback server (its `from` is left to the server).
    pub async fn send(&self, mut el: Element) -> Result<(), FallbackError> {
        stanza::remove_attr(&mut el, "from");
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((el, tx))
            .await
            .map_err(|_| FallbackError::Stopped)?;
        rx.await.map_err(|_| FallbackError::Stopped)?
    }
}

async fn run(
    options: ClientOptions,
    mut jobs: mpsc::Receiver<Job>,
    inbound: mpsc::Sender<Element>,
) {
    let mut client: Option<C2sClient> = None;
    loop {
        tokio::select! {
            job = jobs.recv() => {
                let Some((el, reply)) = job else { return };
                if client.is_none() {
                    match C2sClient::connect(&options).await {
                        Ok(mut c) => {
                            tracing::info!(account = %c.jid(), "connected to the fallback server");
                            let _ = c.send(&stanza::element("presence", xor_xmpp::stream::NS_CLIENT, &[])).await;
                            client = Some(c);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(FallbackError::Connect(e)));
                            continue;
                        }
                    }
                }
                let Some(c) = client.as_mut() else { continue };
                let result = c.send(&el).await.map_err(FallbackError::Send);
                if result.is_err() {
                    client = None;
                }
                let _ = reply.send(result);
            }
            got = async { client.as_mut()?.recv_within(std::time::Duration::from_secs(3600)).await }, if client.is_some() => {
                match got {
                    Some(el) => {
                        if stanza::is_stanza(&el) && inbound.send(el).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        tracing::info!("the fallback connection closed; it reopens on next use");
                        client = None;
                    }
                }
            }
        }
    }
}
