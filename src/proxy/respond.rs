//! Writing gateway-made [`Reply`]s to a Pingora session; the one place they become HTTP.

use crate::reply::Reply;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

pub async fn send(session: &mut Session, reply: &Reply) -> pingora::Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD;
    let mut header = ResponseHeader::build(reply.status, Some(reply.headers.len() + 1))?;
    for (name, value) in &reply.headers {
        header.insert_header(*name, value.as_str())?;
    }
    header.insert_header("Content-Length", reply.body.len().to_string())?;
    session
        .write_response_header(Box::new(header), head_only)
        .await?;
    if !head_only {
        session
            .write_response_body(Some(reply.body.clone()), true)
            .await?;
    }
    Ok(())
}
