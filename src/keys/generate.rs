//! Key generation for `oada-gateway keygen` and the demo: PKCS#8 PEM private keys.

use super::KeyError;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::Algorithm;

/// A new private key for `alg` (RS256: RSA 2048; ES256: P-256; EdDSA: Ed25519) as PKCS#8 PEM.
pub fn private_key_pem(alg: Algorithm) -> Result<String, KeyError> {
    let der: Vec<u8> = match alg {
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .map_err(|_| KeyError::Generation)?;
            let der = pair.as_der().map_err(|_| KeyError::Generation)?;
            der.as_ref().to_vec()
        }
        Algorithm::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| KeyError::Generation)?;
            doc.as_ref().to_vec()
        }
        Algorithm::EdDSA => {
            // PKCS#8 v1: the form jsonwebtoken reads back.
            let doc = Ed25519KeyPair::generate_pkcs8v1(&SystemRandom::new()).map_err(|_| KeyError::Generation)?;
            doc.as_ref().to_vec()
        }
        other => return Err(KeyError::UnsupportedAlg(super::jwk::algorithm_name(other).into())),
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}
