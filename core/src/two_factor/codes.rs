//! The pure part of two-factor sign-in: authenticator codes (RFC 6238: HMAC-SHA-1, six digits,
//! 30-second steps, one step of clock skew either way), the enrolment URI and QR code, and
//! recovery codes. No database, no clock of its own: every function takes the time.

use hmac::{Hmac, Mac};
use rand::{Rng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use totp_rs::{Algorithm, TOTP};

pub const STEP_SECS: i64 = 30;
pub const DIGITS: usize = 6;
/// 160 bits, as RFC 4226 recommends.
pub const SECRET_BYTES: usize = 20;
pub const RECOVERY_CODES: usize = 10;
/// What authenticator apps show as the account's issuer.
pub const ISSUER: &str = "Pier";

/// The alphabet of recovery codes: no 0/o, 1/l/i, so a code read off paper types back right.
const RECOVERY_ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
/// Four groups of four characters from 31: 79 bits.
const RECOVERY_GROUPS: usize = 4;
const RECOVERY_GROUP_LEN: usize = 4;

pub fn new_secret() -> Vec<u8> {
    let mut s = vec![0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut s);
    s
}

fn totp(secret: &[u8], account: &str) -> TOTP {
    TOTP::new(
        Algorithm::SHA1,
        DIGITS,
        1,
        STEP_SECS as u64,
        secret.to_vec(),
        Some(ISSUER.to_owned()),
        // An account name may not hold a colon; e-mail addresses Pier accepts never do.
        account.replace(':', "."),
    )
    .expect("a 160-bit secret and six digits are valid")
}

/// The code an authenticator shows during `step` (`unix time / 30`).
pub fn code_at(secret: &[u8], step: i64) -> String {
    totp(secret, "-").generate((step.max(0) * STEP_SECS) as u64)
}

/// The step whose code `code` is, among the current one and one either side, if any. Every
/// candidate is compared in constant time.
pub fn matching_step(secret: &[u8], code: &str, now: i64) -> Option<i64> {
    let current = now.div_euclid(STEP_SECS);
    let mut found = None;
    for step in [current - 1, current, current + 1] {
        let ok: bool = code_at(secret, step)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .into();
        if ok && found.is_none() {
            found = Some(step);
        }
    }
    found
}

/// `otpauth://totp/Pier:ada@example.com?secret=…&issuer=Pier…`, what the QR code holds.
pub fn otpauth_uri(secret: &[u8], account: &str) -> String {
    totp(secret, account).get_url()
}

/// The secret in base32, in groups of four, for typing into an app by hand.
pub fn secret_for_humans(secret: &[u8]) -> String {
    let b32 = totp(secret, "-").get_secret_base32();
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The URI as a QR code, an SVG document with a white quiet zone (scanners need it in dark mode).
pub fn qr_svg(uri: &str) -> String {
    let code = qrcode::QrCode::with_error_correction_level(uri, qrcode::EcLevel::M)
        .expect("an otpauth URI fits in a QR code");
    code.render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(200, 200)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .quiet_zone(true)
        .build()
}

/// What a person typed in the code field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Typed {
    /// Six digits from the authenticator.
    Totp(String),
    /// A recovery code, normalised (lower case, no dashes or spaces).
    Recovery(String),
}

/// Reads the code field: spaces and dashes are ignored, six digits are an authenticator code,
/// sixteen letters and digits of the recovery alphabet a recovery code.
pub fn parse(input: &str) -> Option<Typed> {
    let plain: String = input
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    if plain.len() == DIGITS && plain.bytes().all(|b| b.is_ascii_digit()) {
        return Some(Typed::Totp(plain));
    }
    if plain.len() == RECOVERY_GROUPS * RECOVERY_GROUP_LEN
        && plain.bytes().all(|b| RECOVERY_ALPHABET.contains(&b))
    {
        return Some(Typed::Recovery(plain));
    }
    None
}

/// Ten new recovery codes, as shown to the person (`abcd-efgh-jkmn-pqrs`).
pub fn new_recovery_codes() -> Vec<String> {
    let mut rng = rand::rngs::OsRng;
    (0..RECOVERY_CODES)
        .map(|_| {
            let chars: Vec<u8> = (0..RECOVERY_GROUPS * RECOVERY_GROUP_LEN)
                .map(|_| RECOVERY_ALPHABET[rng.gen_range(0..RECOVERY_ALPHABET.len())])
                .collect();
            chars
                .chunks(RECOVERY_GROUP_LEN)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("-")
        })
        .collect()
}

/// How a recovery code is stored: HMAC-SHA-256 under a key derived from the operator's key,
/// bound to the account. The codes carry 79 random bits, so a slow password hash would add
/// nothing but cost; the key keeps a stolen database from testing guesses offline.
pub fn recovery_hash(key: &[u8], user_id: i64, normalised: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(&user_id.to_be_bytes());
    mac.update(normalised.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 6238 appendix B, SHA-1, secret "12345678901234567890" (the six low digits).
    #[test]
    fn codes_match_the_rfc_test_vectors() {
        let secret = b"12345678901234567890";
        assert_eq!(code_at(secret, 59 / 30), "287082");
        assert_eq!(code_at(secret, 1111111109 / 30), "081804");
        assert_eq!(code_at(secret, 1234567890 / 30), "005924");
        assert_eq!(code_at(secret, 2000000000 / 30), "279037");
    }

    #[test]
    fn a_code_is_good_for_its_step_and_one_either_side() {
        let secret = new_secret();
        let now = 1_800_000_015;
        let step = now / STEP_SECS;
        for s in [step - 1, step, step + 1] {
            assert_eq!(matching_step(&secret, &code_at(&secret, s), now), Some(s));
        }
        for s in [step - 2, step + 2] {
            let code = code_at(&secret, s);
            // A neighbour step can share the code by chance (one in a million): skip that.
            if [step - 1, step, step + 1]
                .iter()
                .all(|n| code_at(&secret, *n) != code)
            {
                assert_eq!(matching_step(&secret, &code, now), None);
            }
        }
        assert_eq!(matching_step(&secret, "12345", now), None);
    }

    #[test]
    fn the_uri_names_pier_and_the_account() {
        let uri = otpauth_uri(b"12345678901234567890", "ada@example.com");
        assert!(
            uri.starts_with("otpauth://totp/Pier:ada%40example.com?"),
            "{uri}"
        );
        assert!(
            uri.contains("secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
            "{uri}"
        );
        assert!(uri.contains("issuer=Pier"), "{uri}");
        assert_eq!(
            secret_for_humans(b"12345678901234567890"),
            "GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"
        );
        let svg = qr_svg(&uri);
        assert!(svg.contains("<svg") && svg.contains("#000000"), "{svg}");
    }

    #[test]
    fn typed_codes_are_told_apart_and_normalised() {
        assert_eq!(parse(" 123 456 "), Some(Typed::Totp("123456".into())));
        assert_eq!(
            parse("ABCD-efgh-JKMN-pqrs"),
            Some(Typed::Recovery("abcdefghjkmnpqrs".into()))
        );
        assert_eq!(parse("12345"), None);
        assert_eq!(parse("1234567"), None);
        // Letters outside the alphabet (o, l, i, 0, 1) are not a recovery code.
        assert_eq!(parse("oooo-llll-iiii-0000"), None);
        assert_eq!(parse(""), None);
    }

    #[test]
    fn recovery_codes_are_distinct_parse_back_and_hash_per_account() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), RECOVERY_CODES);
        let unique: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(unique.len(), RECOVERY_CODES);
        for c in &codes {
            assert_eq!(c.len(), 19, "{c}");
            let Some(Typed::Recovery(n)) = parse(&c.to_uppercase()) else {
                panic!("{c} does not parse back");
            };
            assert_eq!(n, c.replace('-', ""));
        }
        let key = [7u8; 64];
        assert_ne!(
            recovery_hash(&key, 1, "abcdefghjkmnpqrs"),
            recovery_hash(&key, 2, "abcdefghjkmnpqrs")
        );
        assert_ne!(
            recovery_hash(&key, 1, "abcdefghjkmnpqrs"),
            recovery_hash(&[8u8; 64], 1, "abcdefghjkmnpqrs")
        );
    }
}
