//! Webhooks (issue 19): events pushed to partners' own HTTP endpoints.
//!
//! A partner names the URL, so every URL is a request the server would make on a
//! stranger's behalf; [`ssrf`] is the guard each one passes, at registration and again
//! when a delivery connects (to the very address that was checked, never following a
//! redirect). Subscriptions and the delivery worker build on it.

pub mod ssrf;
