//! RFC 6238 written out for the tests (HMAC-SHA-1, six digits, 30-second steps), so that a
//! mistake in Pier's own code cannot agree with itself.

use hmac::{Hmac, Mac};

/// The code an authenticator app shows for the base32 key Pier displayed (spaces allowed)
/// during the 30-second `step`.
pub fn code(key: &str, step: i64) -> String {
    let plain: String = key.chars().filter(|c| !c.is_whitespace()).collect();
    let secret =
        base32::decode(base32::Alphabet::Rfc4648 { padding: false }, &plain).expect("a base32 key");
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&secret).unwrap();
    mac.update(&(step as u64).to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let n = u32::from_be_bytes(h[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", n % 1_000_000)
}

/// The current 30-second step.
pub fn step_now() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970");
    i64::try_from(now.as_secs() / 30).expect("a step that fits")
}
