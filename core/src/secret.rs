//! The operator's secret key: a file in the data dir, created with mode 0600 on first run and
//! never defaulted or logged. It signs session cookies and encrypts secrets at rest
//! (XChaCha20-Poly1305).

use std::{fmt, io::Write, path::Path};

use chacha20poly1305::{
    aead::{Aead, KeyInit, Payload},
    XChaCha20Poly1305, XNonce,
};
use rand::RngCore;
use sha2::{Digest, Sha512};

use crate::{Error, Result};

const PREFIX: &str = "enc1:";

#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(…)")
    }
}

impl SecretKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        SecretKey(k)
    }

    /// Reads the key file, or creates it (mode 0600, hex text) when it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(text.trim()).ok_or_else(|| {
                Error::internal(format!(
                    "{} is not a Pier key (64 hex characters expected)",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = Self::generate();
                let mut opts = std::fs::OpenOptions::new();
                opts.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
                let mut f = opts
                    .open(path)
                    .map_err(|e| Error::internal(format!("creating {}: {e}", path.display())))?;
                writeln!(f, "{}", hex::encode(key.0))
                    .and_then(|_| f.sync_all())
                    .map_err(|e| Error::internal(format!("writing {}: {e}", path.display())))?;
                tracing::info!(path = %path.display(), "created a new secret key");
                Ok(key)
            }
            Err(e) => Err(Error::internal(format!("reading {}: {e}", path.display()))),
        }
    }

    fn parse(hex_text: &str) -> Option<Self> {
        let bytes = hex::decode(hex_text).ok()?;
        Some(SecretKey(bytes.try_into().ok()?))
    }

    /// A 64-byte subkey for one purpose (e.g. cookie signing), so no two uses share a key.
    pub fn derive(&self, purpose: &str) -> [u8; 64] {
        let mut h = Sha512::new();
        h.update(b"pier key derivation v1\0");
        h.update(purpose.as_bytes());
        h.update([0]);
        h.update(self.0);
        h.finalize().into()
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        let sub = self.derive("encryption at rest");
        XChaCha20Poly1305::new_from_slice(&sub[..32]).expect("32-byte key")
    }

    /// Encrypts `plaintext`, binding it to `context` (e.g. "app:12:env:TOKEN") so a value cannot
    /// be moved to another row.
    pub fn encrypt(&self, plaintext: &[u8], context: &str) -> String {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .expect("encryption cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend(ct);
        format!("{PREFIX}{}", hex::encode(out))
    }

    pub fn decrypt(&self, sealed: &str, context: &str) -> Result<Vec<u8>> {
        let bad = || Error::internal("a stored secret could not be decrypted with this key");
        let raw = hex::decode(sealed.strip_prefix(PREFIX).ok_or_else(bad)?).map_err(|_| bad())?;
        if raw.len() < 24 {
            return Err(bad());
        }
        let (nonce, ct) = raw.split_at(24);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_context_binding() {
        let k = SecretKey::generate();
        let sealed = k.encrypt(b"hunter2", "app:1:env:DB_PASSWORD");
        assert!(!sealed.contains("hunter2"));
        assert_eq!(
            k.decrypt(&sealed, "app:1:env:DB_PASSWORD").unwrap(),
            b"hunter2"
        );
        assert!(k.decrypt(&sealed, "app:2:env:DB_PASSWORD").is_err());
        assert!(SecretKey::generate()
            .decrypt(&sealed, "app:1:env:DB_PASSWORD")
            .is_err());
        assert_eq!(format!("{k:?}"), "SecretKey(…)");
    }

    #[test]
    fn key_file_is_created_private_and_reused() {
        let dir = std::env::temp_dir().join(format!("pier-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("secret.key");
        let _ = std::fs::remove_file(&path);
        let a = SecretKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(a.0, b.0);
        std::fs::write(&path, "not hex").unwrap();
        assert!(SecretKey::load_or_create(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
