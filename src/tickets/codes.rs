//! Check-in codes: a ticket id and its event id, signed with Ed25519. A door
//! scanner holding the public key can tell a genuine code for its event from
//! a forged one without a network; the server stays the authority on whether
//! the ticket was already used.
//!
//! Format: `SPG1.<base64url(ticket id ‖ event id)>.<base64url(signature)>`,
//! the signature covering `spanglish-ticket-v1` ‖ ticket id ‖ event id.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::Secret;

const PREFIX: &str = "SPG1";
const CONTEXT: &[u8] = b"spanglish-ticket-v1";

pub struct TicketSigner {
    key: SigningKey,
}

impl TicketSigner {
    /// The key is derived from the server secret (with its own context, so
    /// it shares nothing usable with token signing) unless one is given.
    pub fn from_secret(secret: &Secret) -> Self {
        let seed: [u8; 32] = Sha256::new()
            .chain_update(b"spanglish ticket signing key v1")
            .chain_update(secret.expose().as_bytes())
            .finalize()
            .into();
        Self {
            key: SigningKey::from_bytes(&seed),
        }
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    pub fn code(&self, ticket: Uuid, event: Uuid) -> String {
        let payload = payload(ticket, event);
        let signature = self.key.sign(&message(&payload));
        format!(
            "{PREFIX}.{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }

    /// The (ticket, event) a code names, if this server signed it.
    pub fn verify(&self, code: &str) -> Option<(Uuid, Uuid)> {
        verify_with(&self.public_key(), code)
    }
}

fn payload(ticket: Uuid, event: Uuid) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(ticket.as_bytes());
    bytes[16..].copy_from_slice(event.as_bytes());
    bytes
}

fn message(payload: &[u8; 32]) -> Vec<u8> {
    [CONTEXT, payload.as_slice()].concat()
}

/// What a scanner does offline with the published key.
pub fn verify_with(key: &VerifyingKey, code: &str) -> Option<(Uuid, Uuid)> {
    let mut parts = code.trim().split('.');
    let (prefix, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
    if prefix != PREFIX || parts.next().is_some() {
        return None;
    }
    let payload: [u8; 32] = URL_SAFE_NO_PAD.decode(payload).ok()?.try_into().ok()?;
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(signature).ok()?).ok()?;
    key.verify_strict(&message(&payload), &signature).ok()?;

    let ticket = Uuid::from_slice(&payload[..16]).ok()?;
    let event = Uuid::from_slice(&payload[16..]).ok()?;
    Some((ticket, event))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> TicketSigner {
        TicketSigner::from_secret(&Secret::new("a server secret of enough length!"))
    }

    #[test]
    fn a_code_verifies_and_names_its_ticket_and_event() {
        let (ticket, event) = (Uuid::new_v4(), Uuid::new_v4());
        let code = signer().code(ticket, event);
        assert!(code.starts_with("SPG1."));
        assert_eq!(signer().verify(&code), Some((ticket, event)));
        assert_eq!(
            verify_with(&signer().public_key(), &code),
            Some((ticket, event))
        );
    }

    #[test]
    fn altered_or_foreign_codes_are_refused() {
        let code = signer().code(Uuid::new_v4(), Uuid::new_v4());
        let other = TicketSigner::from_secret(&Secret::new("another secret of enough length!!"));
        assert_eq!(other.verify(&code), None);

        let mut tampered: Vec<char> = code.chars().collect();
        tampered[8] = if tampered[8] == 'A' { 'B' } else { 'A' };
        assert_eq!(
            signer().verify(&tampered.into_iter().collect::<String>()),
            None
        );
        assert_eq!(signer().verify("SPG1.garbage.more"), None);
        assert_eq!(signer().verify(""), None);
    }
}
