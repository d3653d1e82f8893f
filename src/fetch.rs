//! What the gateway's outbound HTTP clients share (key sets, discovery documents, client
//! discovery, introspection): reading an answer's body without ever holding more than a bound.

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the bound; reading stopped there.
    TooLarge,
    Read(reqwest::Error),
}

/// Reads `response`'s body chunk by chunk, refusing it once it would pass `max` bytes (a
/// `Content-Length` is not trusted: the count is of what arrives).
pub async fn read_bounded(response: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(len: usize) -> reqwest::Response {
        reqwest::Response::from(http::Response::new(vec![b'x'; len]))
    }

    #[tokio::test]
    async fn a_body_up_to_the_bound_is_read_and_one_byte_more_refused() {
        assert_eq!(read_bounded(&mut response(1024), 1024).await.unwrap().len(), 1024);
        assert!(matches!(read_bounded(&mut response(1025), 1024).await, Err(BodyError::TooLarge)));
        assert!(read_bounded(&mut response(0), 1024).await.unwrap().is_empty());
    }
}
