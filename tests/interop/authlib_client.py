"""Python authlib as moisturemapper: RFC 8414 discovery, RFC 7591 registration, then
client_credentials with authlib's PrivateKeyJWT, then a proxied request with the token.

usage: authlib_client.py ISSUER KEY_PEM REGISTRATION_JSON RESOURCE_URL
Prints one JSON object with what happened; exits non-zero on any unexpected failure.
"""
import json
import sys

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.integrations.base_client.errors import OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT

issuer, key_path, doc_path, resource = sys.argv[1:5]
with open(doc_path) as f:
    document = json.load(f)
with open(key_path) as f:
    private_key = f.read()
kid = document["jwks"]["keys"][0]["kid"]

metadata = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10).json()
registration = requests.post(metadata["registration_endpoint"], json=document, timeout=10)
if registration.status_code != 201:
    sys.exit(f"registration failed: {registration.status_code} {registration.text}")
client_id = registration.json()["client_id"]

session = OAuth2Session(
    client_id,
    private_key,
    token_endpoint_auth_method="private_key_jwt",
    scope="weather.observations:read",
)
session.register_client_auth_method(PrivateKeyJWT(metadata["token_endpoint"], headers={"kid": kid}))
token = session.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
response = session.get(resource, timeout=10)

# The same flow with a key that is not the registered one must be refused.
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
impostor = OAuth2Session(client_id, other_key, token_endpoint_auth_method="private_key_jwt")
impostor.register_client_auth_method(PrivateKeyJWT(metadata["token_endpoint"], headers={"kid": kid}))
try:
    impostor.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    impostor_error = None
except OAuthError as e:
    impostor_error = e.error

print(json.dumps({
    "client_id": client_id,
    "token_type": token["token_type"],
    "scope": token["scope"],
    "expires_in": token["expires_in"],
    "resource_status": response.status_code,
    "resource": response.json(),
    "impostor_error": impostor_error,
}))
