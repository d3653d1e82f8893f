"""Python authlib as a web app in the user-delegated flow: the authorization URL with PKCE S256
(authlib's own create_authorization_url), a person's browser signing in and approving (plain
requests following the gateway's forms), the code exchange with authlib's PrivateKeyJWT, a
request for the person's data, then a refresh.

usage: authlib_code_flow.py ISSUER CLIENT_ID KEY_PEM KID REDIRECT_URI USERNAME PASSWORD RESOURCE_URL
Prints one JSON object; exits non-zero on any unexpected failure.
"""
import html
import json
import re
import sys
from urllib.parse import parse_qs, urljoin, urlparse

import requests
from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT

issuer, client_id, key_path, kid, redirect_uri, username, password, resource = sys.argv[1:9]
with open(key_path) as f:
    private_key = f.read()
metadata = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()

session = OAuth2Session(
    client_id,
    private_key,
    token_endpoint_auth_method="private_key_jwt",
    scope="weather.stations:read",
    redirect_uri=redirect_uri,
    code_challenge_method="S256",
)
session.register_client_auth_method(PrivateKeyJWT(metadata["token_endpoint"], headers={"kid": kid}))
code_verifier = generate_token(64)
authorization_url, state = session.create_authorization_url(
    metadata["authorization_endpoint"], code_verifier=code_verifier
)


def hidden(page, name):
    return html.unescape(re.search(rf'name="{name}" value="([^"]*)"', page).group(1))


# the person's browser
browser = requests.Session()
login = browser.get(authorization_url, allow_redirects=False, timeout=10)
assert login.status_code == 200, login.text
signed_in = browser.post(
    urljoin(issuer, metadata["authorization_endpoint"].replace("/authorization", "/login")),
    data={"username": username, "password": password, "request": hidden(login.text, "request"), "csrf": hidden(login.text, "csrf")},
    allow_redirects=False,
    timeout=10,
)
assert signed_in.status_code == 303, signed_in.text
consent = browser.get(urljoin(issuer, signed_in.headers["Location"]), allow_redirects=False, timeout=10)
assert consent.status_code == 200, consent.text
approved = browser.post(
    urljoin(issuer, metadata["authorization_endpoint"].replace("/authorization", "/consent")),
    data={"decision": "approve", "request": hidden(consent.text, "request"), "csrf": hidden(consent.text, "csrf")},
    allow_redirects=False,
    timeout=10,
)
assert approved.status_code == 303, approved.text
callback = approved.headers["Location"]
returned_state = parse_qs(urlparse(callback).query)["state"][0]

# the app's server: authlib checks the state and exchanges the code
token = session.fetch_token(metadata["token_endpoint"], authorization_response=callback, code_verifier=code_verifier)
data = session.get(resource, timeout=10)
refreshed = session.refresh_token(metadata["token_endpoint"], refresh_token=token["refresh_token"])
again = requests.get(resource, headers={"Authorization": f"Bearer {refreshed['access_token']}"}, timeout=10)

print(json.dumps({
    "state_matches": returned_state == state,
    "token_type": token["token_type"],
    "scope": token["scope"],
    "has_refresh_token": "refresh_token" in token,
    "resource_status": data.status_code,
    "resource": data.json(),
    "refreshed_rotated": refreshed["refresh_token"] != token["refresh_token"],
    "refreshed_status": again.status_code,
}))
