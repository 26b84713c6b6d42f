//! X448 (RFC 7748) as a rustls key-exchange group.
//!
//! rustls ships no X448, but reference SMP clients put an X448 key share first; a server without
//! it answers with a HelloRetryRequest, costing a round trip (seconds over Tor). The curve
//! arithmetic comes from `crrl` (constant-time, with a fixed-base comb for the key pair): on
//! this machine a key pair and DH take ~210 µs there against ~740 µs with
//! `ed448-goldilocks-plus`, and X448 is most of a handshake's CPU (docs/benchmarks.md).

use ring::rand::{SecureRandom, SystemRandom};
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::{Error, NamedGroup, PeerMisbehaved};
use zeroize::Zeroizing;

/// Length of X448 scalars, public keys and shared secrets.
const X448_LENGTH: usize = 56;

/// The X448 key-exchange group, to list in a `CryptoProvider`'s `kx_groups`.
pub static X448: &dyn SupportedKxGroup = &X448Group;

/// See [`X448`].
#[derive(Debug)]
struct X448Group;

impl SupportedKxGroup for X448Group {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, Error> {
        let mut secret = Zeroizing::new([0u8; X448_LENGTH]);
        SystemRandom::new()
            .fill(secret.as_mut())
            .map_err(|_| Error::FailedToGetRandomBytes)?;
        // Clamping (RFC 7748 section 5) is done by both functions.
        let public = crrl::x448::x448_base(&secret);
        Ok(Box::new(X448Exchange { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::X448
    }
}

/// One side's ephemeral key pair, consumed by `complete`.
struct X448Exchange {
    secret: Zeroizing<[u8; X448_LENGTH]>,
    public: [u8; X448_LENGTH],
}

impl ActiveKeyExchange for X448Exchange {
    fn complete(self: Box<Self>, peer_pub_key: &[u8]) -> Result<SharedSecret, Error> {
        let peer: [u8; X448_LENGTH] = peer_pub_key
            .try_into()
            .map_err(|_| Error::from(PeerMisbehaved::InvalidKeyShare))?;
        let shared = Zeroizing::new(crrl::x448::x448(&peer, &self.secret));
        // RFC 7748 section 6.2: an all-zero output means a small-order peer key.
        if shared.iter().fold(0u8, |acc, b| acc | b) == 0 {
            return Err(PeerMisbehaved::InvalidKeyShare.into());
        }
        Ok(SharedSecret::from(&shared[..]))
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

    fn hex56(s: &str) -> [u8; 56] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect();
        v.try_into().expect("56 bytes")
    }

    /// RFC 7748 section 6.2: Alice's and Bob's key pairs and their shared secret.
    #[test]
    fn rfc7748_diffie_hellman_vector() {
        let a = hex56("9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b");
        let a_pub = hex56("9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0");
        let b = hex56("1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d");
        let b_pub = hex56("3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609");
        let k = hex56("07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56fd2464c335543936521c24403085d59a449a5037514a879d");
        assert_eq!(crrl::x448::x448_base(&a), a_pub);
        assert_eq!(crrl::x448::x448_base(&b), b_pub);
        assert_eq!(crrl::x448::x448(&b_pub, &a), k);
        assert_eq!(crrl::x448::x448(&a_pub, &b), k);
    }

    /// An independent X448 (`ed448-goldilocks-plus`, the implementation used before) agrees
    /// with this group on random keys, in both directions.
    #[test]
    fn agrees_with_an_independent_implementation() {
        use ed448_goldilocks_plus::x448::{EphemeralSecret, PublicKey};
        for i in 0..8u8 {
            let theirs_seed = [i.wrapping_mul(37).wrapping_add(11); 56];
            let theirs = EphemeralSecret::from(theirs_seed);
            let theirs_pub = PublicKey::from(&theirs);
            let ours = X448.start().expect("ours");
            let ours_pub: [u8; 56] = ours.pub_key().try_into().expect("56");
            let k1 = ours.complete(theirs_pub.as_bytes()).expect("complete");
            let k2 = theirs.diffie_hellman(&PublicKey::from(ours_pub));
            assert_eq!(k1.secret_bytes(), &k2.as_bytes()[..]);
            assert_eq!(crrl::x448::x448_base(&theirs_seed), *theirs_pub.as_bytes());
        }
    }
}
