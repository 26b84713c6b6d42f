//! Random IDs and nonces.
//!
//! Command handling takes its generator as a parameter (a seeded one in property tests, the OS
//! generator in the server), so the same inputs give the same queue IDs and nonces in tests.

use rand::{CryptoRng, RngCore};

/// A cryptographically secure generator that can be passed around as one object.
pub trait SecureRng: RngCore + CryptoRng {}
impl<T: RngCore + CryptoRng> SecureRng for T {}

/// `n` random bytes from `rng` (queue IDs, message IDs, nonces).
pub fn bytes_from(rng: &mut dyn SecureRng, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    rng.fill_bytes(&mut v);
    v
}

/// A random 24-byte nonce from `rng`.
pub fn nonce_from(rng: &mut dyn SecureRng) -> [u8; 24] {
    let mut n = [0u8; 24];
    rng.fill_bytes(&mut n);
    n
}

/// `n` random bytes from the operating system (outside command handling: clients, handshakes).
pub fn random_bytes(n: usize) -> Vec<u8> {
    bytes_from(&mut rand::rngs::OsRng, n)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    #[test]
    fn seeded_generators_repeat() {
        let mut a = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(super::bytes_from(&mut a, 24), super::bytes_from(&mut b, 24));
        assert_ne!(super::random_bytes(24), super::random_bytes(24));
    }
}
