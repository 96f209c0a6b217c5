//! The `ui` subcommand the three client binaries share (feature `cli`).

use medrelay_client::ClientError;

use crate::{serve as serve_app, RoleApp, UiOptions};

/// Arguments of `medrelay-<role> ui`.
#[derive(Clone, Debug, clap::Args)]
pub struct UiArgs {
    /// Port on 127.0.0.1 [default: a free one].
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Do not open a browser; only print the sign-in link.
    #[arg(long)]
    pub no_open: bool,
}

/// Serves `app` until the user quits (see [`crate::serve`]); an error is
/// one line for the CLI's `error:` output.
pub fn serve(app: RoleApp, args: &UiArgs) -> Result<(), ClientError> {
    serve_app(app, &UiOptions { port: args.port, open_browser: !args.no_open })
        .map_err(|e| ClientError::Invalid(e.to_string()))
}
