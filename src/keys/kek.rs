//! The key-encryption key (KEK): what seals signing keys, second-factor
//! secrets and the deployment's other secrets in Postgres. The current key
//! seals; previous ones (`keys.previous_encryption_keys`) only open, so the
//! KEK can be replaced while instances run (`tessera keys rewrap`).
//!
//! Each sealed value is stored with the identifier of the key that sealed
//! it, so it is opened with that key and never by trying them all, and
//! startup can say what each key still seals. Values stored before
//! identifiers were (`None`) are opened by trying each configured key.

use anyhow::anyhow;
use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::digest::{SHA256, digest};
use secrecy::{ExposeSecret, SecretBox};

/// What the identifier hashes before the key, so that it is never a hash
/// another use of the key could produce.
const ID_CONTEXT: &[u8] = b"tessera kek id v1";

/// Names a key-encryption key without revealing it: the first 8 bytes of
/// SHA-256(`ID_CONTEXT` || key), shown as 16 hex digits. 64 bits of a hash
/// say nothing usable about a 256-bit random key, and two keys of one
/// deployment colliding is a 2^-64 event.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KekId([u8; 8]);

impl KekId {
    pub fn of(key: &[u8; 32]) -> KekId {
        let mut input = ID_CONTEXT.to_vec();
        input.extend_from_slice(key);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest(&SHA256, &input).as_ref()[..8]);
        KekId(id)
    }

    /// The identifier as stored (a `kek_id` column); `None` if it cannot be one.
    pub fn from_stored(bytes: &[u8]) -> Option<KekId> {
        <[u8; 8]>::try_from(bytes).ok().map(KekId)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Display for KekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl std::fmt::Debug for KekId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KekId({self})")
    }
}

/// One AES-256-GCM key-encryption key. The label a value is sealed with is
/// bound in as associated data (a kid, `totp:<user id>`), so a sealed value
/// cannot be moved onto another row.
pub struct KeyEncryptionKey {
    aead: RandomizedNonceKey,
    id: KekId,
    /// Kept for what is derived from the key rather than sealed under it
    /// (device credentials, DPoP nonces, the recovery-code key of earlier
    /// versions).
    secret: SecretBox<[u8; 32]>,
}

impl std::fmt::Debug for KeyEncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyEncryptionKey({})", self.id)
    }
}

impl KeyEncryptionKey {
    pub fn new(bytes: &[u8; 32]) -> anyhow::Result<Self> {
        let aead = RandomizedNonceKey::new(&AES_256_GCM, bytes)
            .map_err(|_| anyhow!("cannot build the key-encryption key"))?;
        Ok(Self {
            aead,
            id: KekId::of(bytes),
            secret: SecretBox::new(Box::new(*bytes)),
        })
    }

    pub fn id(&self) -> KekId {
        self.id
    }

    /// The raw key, for keys derived from it. Never to be logged or stored.
    pub fn secret(&self) -> &[u8; 32] {
        self.secret.expose_secret()
    }

    /// Returns `nonce || ciphertext || tag`.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut in_out = plaintext.to_vec();
        let nonce = self
            .aead
            .seal_in_place_append_tag(Aad::from(label.as_bytes()), &mut in_out)
            .map_err(|_| anyhow!("sealing {label} failed"))?;
        let mut sealed = nonce.as_ref().to_vec();
        sealed.extend_from_slice(&in_out);
        Ok(sealed)
    }

    /// `None` if this key did not seal `sealed` under `label` (or it was
    /// altered).
    pub fn open(&self, label: &str, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut in_out = ciphertext.to_vec();
        let plain = self
            .aead
            .open_in_place(nonce, Aad::from(label.as_bytes()), &mut in_out)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// A value sealed under the current key, with that key's identifier.
#[derive(Debug, Clone)]
pub struct Sealed {
    pub bytes: Vec<u8>,
    pub kek_id: KekId,
}

/// The configured key-encryption keys: the current one, which seals, then
/// the previous ones, which only open.
#[derive(Debug)]
pub struct KeyEncryptionKeys {
    /// Never empty; the first is the current key.
    keys: Vec<KeyEncryptionKey>,
}

impl KeyEncryptionKeys {
    pub fn new(current: KeyEncryptionKey, previous: Vec<KeyEncryptionKey>) -> Self {
        let mut keys = vec![current];
        keys.extend(previous);
        Self { keys }
    }

    /// `keys.encryption_key`, then `keys.previous_encryption_keys`.
    pub fn from_settings(settings: &crate::config::Settings) -> anyhow::Result<Self> {
        let mut keys = settings
            .encryption_keys()?
            .iter()
            .map(KeyEncryptionKey::new)
            .collect::<anyhow::Result<Vec<_>>>()?;
        if keys.is_empty() {
            anyhow::bail!("configuration: keys.encryption_key is not set");
        }
        let current = keys.remove(0);
        Ok(Self::new(current, keys))
    }

    pub fn current(&self) -> &KeyEncryptionKey {
        &self.keys[0]
    }

    /// Every configured key, the current one first.
    pub fn all(&self) -> &[KeyEncryptionKey] {
        &self.keys
    }

    /// The configured key with this identifier.
    pub fn find(&self, id: KekId) -> Option<&KeyEncryptionKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// How startup and errors name a configured key: `current` or `previous N`
    /// (its place in `keys.previous_encryption_keys`, from 1).
    pub fn role(&self, id: KekId) -> Option<String> {
        let at = self.keys.iter().position(|k| k.id == id)?;
        Some(match at {
            0 => "current".to_owned(),
            n => format!("previous {n}"),
        })
    }

    /// Seals under the current key.
    pub fn seal(&self, label: &str, plaintext: &[u8]) -> anyhow::Result<Sealed> {
        let current = self.current();
        Ok(Sealed {
            bytes: current.seal(label, plaintext)?,
            kek_id: current.id,
        })
    }

    /// Opens a stored value: with the key `kek_id` names, or, for a value
    /// stored without one, with whichever configured key sealed it.
    pub fn open(
        &self,
        label: &str,
        sealed: &[u8],
        kek_id: Option<&[u8]>,
    ) -> anyhow::Result<Vec<u8>> {
        match kek_id {
            Some(stored) => {
                let id = KekId::from_stored(stored)
                    .ok_or_else(|| anyhow!("{label} has a malformed key-encryption key identifier"))?;
                let key = self.find(id).ok_or_else(|| {
                    anyhow!(
                        "{label} is sealed under key-encryption key {id}, which is not configured: add that key to keys.previous_encryption_keys"
                    )
                })?;
                key.open(label, sealed).ok_or_else(|| {
                    anyhow!("cannot open {label} with key-encryption key {id}: the stored value was altered")
                })
            }
            None => self.identify(label, sealed).map(|(_, plain)| plain).ok_or_else(|| {
                anyhow!(
                    "cannot open {label}: no configured key-encryption key sealed it (add the key it was sealed with to keys.previous_encryption_keys)"
                )
            }),
        }
    }

    /// The configured key that sealed a value stored without an identifier,
    /// and the value opened.
    pub fn identify(&self, label: &str, sealed: &[u8]) -> Option<(KekId, Vec<u8>)> {
        self.keys
            .iter()
            .find_map(|k| k.open(label, sealed).map(|plain| (k.id, plain)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: u8, previous: &[u8]) -> KeyEncryptionKeys {
        KeyEncryptionKeys::new(
            KeyEncryptionKey::new(&[current; 32]).unwrap(),
            previous
                .iter()
                .map(|&b| KeyEncryptionKey::new(&[b; 32]).unwrap())
                .collect(),
        )
    }

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_label() {
        let kek = KeyEncryptionKey::new(&[7u8; 32]).unwrap();
        let sealed = kek.seal("kid-1", b"private").unwrap();
        assert!(!sealed.windows(7).any(|w| w == b"private"));
        assert_eq!(kek.open("kid-1", &sealed).unwrap(), b"private");
        assert!(kek.open("kid-2", &sealed).is_none());
        let other = KeyEncryptionKey::new(&[8u8; 32]).unwrap();
        assert!(other.open("kid-1", &sealed).is_none());
    }

    #[test]
    fn identifiers_name_keys_without_showing_them() {
        let a = KekId::of(&[7u8; 32]);
        assert_eq!(a, KekId::of(&[7u8; 32]));
        assert_ne!(a, KekId::of(&[8u8; 32]));
        assert_eq!(a.to_string().len(), 16);
        assert_eq!(KekId::from_stored(a.as_bytes()), Some(a));
        assert_eq!(KekId::from_stored(&[1, 2, 3]), None);
        // What docs/operations.md computes with sha256sum.
        let mut input = b"tessera kek id v1".to_vec();
        input.extend_from_slice(&[7u8; 32]);
        let hash = digest(&SHA256, &input);
        let hex: String = hash.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(a.to_string(), hex);
        let kek = KeyEncryptionKey::new(&[7u8; 32]).unwrap();
        assert_eq!(format!("{kek:?}"), format!("KeyEncryptionKey({a})"));
    }

    #[test]
    fn the_current_key_seals_and_every_configured_key_opens() {
        let old = keys(1, &[]);
        let sealed_old = old.seal("totp:x", b"secret").unwrap();
        assert_eq!(sealed_old.kek_id, KekId::of(&[1; 32]));

        let rotated = keys(2, &[1]);
        let id = sealed_old.kek_id.as_bytes();
        assert_eq!(
            rotated.open("totp:x", &sealed_old.bytes, Some(id)).unwrap(),
            b"secret"
        );
        // Stored before identifiers were: found by trying each key.
        assert_eq!(
            rotated.open("totp:x", &sealed_old.bytes, None).unwrap(),
            b"secret"
        );
        assert_eq!(
            rotated.identify("totp:x", &sealed_old.bytes).unwrap().0,
            KekId::of(&[1; 32])
        );
        let sealed_new = rotated.seal("totp:x", b"secret").unwrap();
        assert_eq!(sealed_new.kek_id, KekId::of(&[2; 32]));
        assert_eq!(rotated.role(KekId::of(&[2; 32])).unwrap(), "current");
        assert_eq!(rotated.role(KekId::of(&[1; 32])).unwrap(), "previous 1");

        // Once the old key is removed, what it sealed is refused by name.
        let new_only = keys(2, &[]);
        let error = new_only
            .open("totp:x", &sealed_old.bytes, Some(id))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&sealed_old.kek_id.to_string())
                && error.contains("keys.previous_encryption_keys"),
            "{error}"
        );
        assert!(new_only.open("totp:x", &sealed_old.bytes, None).is_err());
        assert!(
            new_only
                .open(
                    "totp:x",
                    &sealed_new.bytes,
                    Some(sealed_new.kek_id.as_bytes())
                )
                .is_ok()
        );
    }
}
