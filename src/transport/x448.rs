//! X448 (RFC 7748) as a rustls key-exchange group.
//!
//! rustls ships no X448, but reference SMP clients put an X448 key share first; a server without
//! it answers with a HelloRetryRequest, costing a round trip (seconds over Tor). The curve
//! arithmetic comes from `ed448-goldilocks-plus`.

use ed448_goldilocks_plus::x448::{EphemeralSecret, PublicKey, X448_LENGTH};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};
use zeroize::Zeroize;

/// The X448 key-exchange group, to list in a `CryptoProvider`'s `kx_groups`.
pub static X448: &dyn SupportedKxGroup = &X448Group;

/// See [`X448`].
#[derive(Debug)]
struct X448Group;

impl SupportedKxGroup for X448Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut seed = [0u8; X448_LENGTH];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| Error::FailedToGetRandomBytes)?;
        let secret = EphemeralSecret::from(seed);
        seed.zeroize();
        let public = PublicKey::from(&secret).to_bytes();
        Ok(Box::new(X448Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X448
    }
}

/// One side's ephemeral key pair, consumed by `complete`.
struct X448Exchange {
    secret: EphemeralSecret,
    public: [u8; X448_LENGTH],
}

impl ActiveKeyExchange for X448Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; X448_LENGTH] = peer_pub_key
            .try_into()
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        // RFC 7748 section 6.2: an all-zero output means a small-order peer key.
        if !shared.was_contributory() {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared.as_bytes()[..]))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::X448
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_sides_agree_and_small_order_is_rejected() {
        let a = X448.start().expect("a");
        let b = X448.start().expect("b");
        assert_eq!(a.group(), NamedGroup::X448);
        assert_eq!(a.pub_key().len(), 56);
        let b_pub = b.pub_key().to_vec();
        let ab = a.complete(&b_pub).expect("ab");
        let a2 = X448.start().expect("a2");
        let a2_pub = a2.pub_key().to_vec();
        let b2a = b.complete(&a2_pub).expect("ba");
        assert_ne!(ab.secret_bytes(), b2a.secret_bytes());

        let c = X448.start().expect("c");
        let d = X448.start().expect("d");
        let d_pub = d.pub_key().to_vec();
        let c_pub = c.pub_key().to_vec();
        assert_eq!(
            c.complete(&d_pub).expect("cd").secret_bytes(),
            d.complete(&c_pub).expect("dc").secret_bytes()
        );

        let e = X448.start().expect("e");
        assert!(e.complete(&[0u8; 56]).is_err());
        let f = X448.start().expect("f");
        assert!(f.complete(&[1u8; 55]).is_err());
    }
}
