//! What the server's integration tests (`server/tests/it/`) and the browser tests (`end2end/`)
//! share: pebble, the ACME test CA; authenticator codes computed apart from Pier's; and
//! sweeping up what a test's Pier made in Docker, by its label; the test Swarm's whereabouts;
//! loopback ports for the servers tests start.

pub mod docker;
pub mod pebble;
pub mod ports;
pub mod swarm;
pub mod totp;

pub use pebble::Pebble;
