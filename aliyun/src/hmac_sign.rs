//! HMAC in the three flavours the platform accepts, base64-encoded.

use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{
    Mac, SimpleHmac,
    digest::{Digest, KeyInit, core_api::BlockSizeUser},
};

use crate::amqp::SignMethod;

/// `base64(HMAC_method(key, data))`.
pub fn sign_base64(method: SignMethod, key: &[u8], data: &[u8]) -> String {
    STANDARD.encode(mac_bytes(method, key, data))
}

/// Compares a base64 signature with the expected one in constant time.
pub fn verify_base64(method: SignMethod, key: &[u8], data: &[u8], signature: &str) -> bool {
    let Ok(given) = STANDARD.decode(signature.trim()) else {
        return false;
    };
    match method {
        SignMethod::HmacSha1 => keyed::<sha1::Sha1>(key, data).verify_slice(&given).is_ok(),
        SignMethod::HmacSha256 => keyed::<sha2::Sha256>(key, data).verify_slice(&given).is_ok(),
        SignMethod::HmacMd5 => keyed::<md5::Md5>(key, data).verify_slice(&given).is_ok(),
    }
}

fn mac_bytes(method: SignMethod, key: &[u8], data: &[u8]) -> Vec<u8> {
    match method {
        SignMethod::HmacSha1 => keyed::<sha1::Sha1>(key, data).finalize().into_bytes().to_vec(),
        SignMethod::HmacSha256 => keyed::<sha2::Sha256>(key, data).finalize().into_bytes().to_vec(),
        SignMethod::HmacMd5 => keyed::<md5::Md5>(key, data).finalize().into_bytes().to_vec(),
    }
}

fn keyed<D: Digest + BlockSizeUser>(key: &[u8], data: &[u8]) -> SimpleHmac<D> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <SimpleHmac<D> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac
}
