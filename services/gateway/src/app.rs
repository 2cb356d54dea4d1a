//! Builds the gateway from configuration and runs it until shutdown.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use base64::{Engine as _, engine::general_purpose::STANDARD};
use bizops_runtime::Shutdown;
use secrecy::ExposeSecret as _;
use tokio::net::TcpListener;
use zeroize::Zeroizing;

use crate::{
    config::{GatewayConfig, SERVICE_NAME},
    shared::{
        backend::{BackendUrls, Backends},
        csrf::{Csrf, normalise_origin},
        ratelimit::RateLimits,
        session::{CookieJar, SessionVerifier},
        state::{AppState, Shared},
        templates::Templates,
    },
};

/// How often expired rate-limit and session-cache entries are dropped.
const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// A built, bound, not yet running gateway.
pub struct App {
    http: TcpListener,
    metrics: TcpListener,
    state: Shared,
    shutdown: Shutdown,
    drain: Duration,
    grace: Duration,
}

fn csrf_key(
    config: &GatewayConfig,
    service_key: &bizops_authn::SigningKey,
) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    match &config.csrf_key {
        Some(text) => {
            let bytes = Zeroizing::new(
                STANDARD
                    .decode(text.expose_secret().trim())
                    .map_err(|_| anyhow::anyhow!("BIZOPS_CSRF_KEY: not base64"))?,
            );
            anyhow::ensure!(bytes.len() == 32, "BIZOPS_CSRF_KEY: must be base64 of exactly 32 bytes");
            let mut key = Zeroizing::new([0u8; 32]);
            key.copy_from_slice(&bytes);
            Ok(key)
        }
        None if config.insecure_dev_cookies => {
            tracing::warn!("no BIZOPS_CSRF_KEY: deriving one from the service key (development only)");
            Ok(service_key.derive_subkey("bizops-gateway-csrf-v1"))
        }
        None => anyhow::bail!(
            "BIZOPS_CSRF_KEY is required (base64 of 32 bytes, e.g. `gateway keygen --aes`); \
             only BIZOPS_INSECURE_DEV_COOKIES=true may do without"
        ),
    }
}

impl App {
    /// Validates configuration, connects to NATS (creating the streams), prepares
    /// the backend clients (connecting lazily) and binds the listeners (port 0
    /// picks a free port).
    pub async fn build(config: GatewayConfig) -> anyhow::Result<Self> {
        let origin = normalise_origin(&config.public_origin)?;
        let signer = config
            .auth
            .signer(SERVICE_NAME)?
            .context("BIZOPS_AUTH__SERVICE_KEY is required (`gateway:<base64 seed>`, see `gateway keygen --kid gateway`)")?;
        let service_key = bizops_authn::SigningKey::parse(
            config.auth.service_key.as_ref().context("BIZOPS_AUTH__SERVICE_KEY is required")?,
        )?;
        let csrf = Csrf::new(csrf_key(&config, &service_key)?, origin.clone());
        let hsts = config.hsts.unwrap_or_else(|| origin.starts_with("https://"));
        if config.rate_limits.login_per_email.is_some() {
            tracing::warn!(
                "BIZOPS_RATE_LIMITS__LOGIN_PER_EMAIL is ignored: the gateway no longer limits sign-ins per email \
                 (identity throttles failed passwords per email and address)"
            );
        }
        if config.insecure_dev_cookies {
            tracing::warn!(
                "insecure_dev_cookies: the session cookie is not Secure; never use this in production"
            );
        } else if origin.starts_with("http://")
            && !origin.contains("://127.0.0.1")
            && !origin.contains("://localhost")
        {
            tracing::warn!(%origin, "the public origin is plain http: browsers will not send the Secure session cookie");
        }
        let client_ip_header = match &config.client_ip_header {
            Some(name) => Some(
                http::HeaderName::from_bytes(name.trim().as_bytes())
                    .map_err(|_| anyhow::anyhow!("BIZOPS_CLIENT_IP_HEADER: not a header name"))?,
            ),
            None => None,
        };
        let backends = Backends::new(
            &BackendUrls {
                identity: &config.identity_url,
                catalog: &config.catalog_url,
                vault: &config.vault_url,
                executor: &config.executor_url,
            },
            signer,
            &config.timeouts,
        )?;
        let (nats, jetstream) = config.nats.connect(SERVICE_NAME).await.context("connecting to NATS")?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
        let metrics = TcpListener::bind(config.metrics_addr)
            .await
            .with_context(|| format!("binding metrics on {}", config.metrics_addr))?;
        let shutdown = Shutdown::new();
        let state = Arc::new(AppState {
            sessions: SessionVerifier::new(backends.clone(), config.session_cache_ttl),
            backends,
            cookies: CookieJar::new(!config.insecure_dev_cookies),
            csrf,
            limits: RateLimits::new(&config.rate_limits),
            origin,
            hsts,
            webhook_body_bytes: config.limits.webhook_body_bytes,
            api_body_bytes: config.limits.api_body_bytes,
            client_ip_header,
            publish_timeout: config.timeouts.publish,
            live_view: config.timeouts.live_view,
            live_views: crate::shared::capacity::LiveViews::new(
                config.limits.live_views_per_session,
                config.limits.live_views,
            ),
            in_flight: Arc::new(tokio::sync::Semaphore::new(config.limits.max_in_flight.max(1))),
            request_timeout: config.timeouts.request,
            header_read: config.timeouts.header_read,
            http2_max_streams: config.limits.http2_max_streams,
            nats,
            jetstream,
            subjects: config.nats.subjects()?,
            templates: Templates::new().context("compiling the dashboard templates")?,
            stopped: shutdown.stopped(),
            draining: std::sync::atomic::AtomicBool::new(false),
        });
        Ok(Self {
            http,
            metrics,
            state,
            shutdown,
            drain: config.shutdown_drain,
            grace: config.shutdown_grace,
        })
    }

    /// The bound HTTP address.
    pub fn http_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.http.local_addr()?)
    }

    /// The bound metrics address.
    pub fn metrics_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.metrics.local_addr()?)
    }

    /// Runs until SIGTERM or Ctrl-C.
    pub async fn run(self) -> anyhow::Result<()> {
        self.run_until(bizops_telemetry::shutdown_signal()).await
    }

    /// Runs until `until` resolves, then shuts down gracefully: `/readyz` turns
    /// 503 for the drain period, then no new connections are taken, live views
    /// end, and in-flight requests get the grace period.
    pub async fn run_until(self, until: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Self { http, metrics, state, shutdown, drain, grace } = self;
        let http_addr = http.local_addr()?;
        let metrics_addr = metrics.local_addr()?;
        let handle = bizops_telemetry::metrics::recorder()?;
        let metrics_task =
            tokio::spawn(bizops_telemetry::metrics::serve(metrics, handle, shutdown.stopped().wait()));
        let pruner = {
            let state = state.clone();
            let stopped = shutdown.stopped();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PRUNE_INTERVAL);
                loop {
                    tokio::select! {
                        () = stopped.clone().wait() => break,
                        _ = tick.tick() => {
                            state.limits.prune();
                            state.sessions.prune();
                        }
                    }
                }
            })
        };

        let (router, _) = crate::routes::router(state.clone());
        let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = Serving { header_read: state.header_read, http2_max_streams: state.http2_max_streams };
        let mut server = tokio::spawn(serve(http, router, serving, async {
            let _ = close_rx.await;
        }));
        tracing::info!(service = SERVICE_NAME, %http_addr, %metrics_addr, "gateway serving");

        tokio::select! {
            () = until => {}
            result = &mut server => {
                drop(shutdown);
                result.context("HTTP server task")?;
                anyhow::bail!("HTTP server stopped unexpectedly");
            }
        }
        tracing::info!(drain_ms = drain.as_millis() as u64, "shutting down: /readyz reports not ready");
        state.draining.store(true, Ordering::Relaxed);
        tokio::time::sleep(drain).await;
        tracing::info!("no new connections; finishing in-flight requests");
        let _ = close_tx.send(());
        // `Shutdown` has no public trigger; dropping it resolves every `Stopped`.
        drop(shutdown);
        match tokio::time::timeout(grace, &mut server).await {
            Ok(result) => result.context("HTTP server task")?,
            Err(_) => {
                tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time");
                server.abort();
            }
        }
        let _ = pruner.await;
        let _ = metrics_task.await;
        if let Err(e) = state.nats.flush().await {
            tracing::debug!(error = %e, "NATS flush at shutdown");
        }
        tracing::info!(service = SERVICE_NAME, "gateway stopped");
        Ok(())
    }
}

/// How connections are served.
struct Serving {
    header_read: Duration,
    http2_max_streams: u32,
}

/// Accepts connections until `stop`, then lets the open ones finish (graceful
/// shutdown of each). Served through hyper's builder with a timer, which is what
/// makes the header-read timeout hold (`axum::serve` gives hyper none, and then
/// a client sending its headers one byte a minute holds a connection forever).
async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    serving: Serving,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    use hyper_util::{
        rt::{TokioExecutor, TokioIo, TokioTimer},
        server::{conn::auto::Builder, graceful::GracefulShutdown},
        service::TowerToHyperService,
    };
    use tower::ServiceExt as _;

    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(serving.header_read);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(serving.http2_max_streams)
        .keep_alive_interval(Some(Duration::from_secs(20)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(stop);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // TCP_NODELAY, so a small answer never waits for the client's delayed ACK.
        let _ = tcp.set_nodelay(true);
        let service =
            router.clone().map_request(move |mut req: axum::extract::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(axum::extract::ConnectInfo(remote));
                req
            });
        let connection =
            builder.serve_connection_with_upgrades(TokioIo::new(tcp), TowerToHyperService::new(service));
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
