//! End-to-end harness: starts real processes (Envoy with the built filter, an echo upstream,
//! the control plane, a real IdP) on ephemeral ports, waits for them with bounded polls, and
//! stops them when the test ends, whether it passed or not.

pub mod browser;
pub mod control_plane;
pub mod envoy;
pub mod eventually;
pub mod fast_idp;
pub mod idp;
pub mod journey;
pub mod key_server;
pub mod local;
pub mod memory;
pub mod paths;
pub mod portal;
pub mod postgres;
pub mod upstream;

pub use browser::Browser;
pub use control_plane::ControlPlane;
pub use envoy::{Envoy, EnvoyConfig};
pub use eventually::eventually;
pub use fast_idp::FastIdp;
pub use idp::{Idp, IdpOptions};
pub use journey::Journey;
pub use key_server::KeyServer;
pub use local::serve_local;
pub use portal::{PortalAnswer, PortalSession};
pub use postgres::Postgres;
pub use upstream::{EchoUpstream, Echoed};
