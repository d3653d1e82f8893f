"""A person in a real browser: headless Chromium (Debian's chromium and chromium-driver) driven by
Selenium through the gateway's sign-in and consent pages. A small HTTP server stands in for the
client's redirect URI and records what the browser brings back.

usage: browser_flow.py AUTHORIZATION_URL REDIRECT_PORT USERNAME PASSWORD DECISION
DECISION is approve or deny. Prints one JSON object: what the pages showed and where the browser
landed.
"""
import http.server
import json
import os
import sys
import tempfile
import threading
from urllib.parse import parse_qs, urlparse

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

authorization_url, redirect_port, username, password, decision = sys.argv[1:6]
landed = {}


class Callback(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if urlparse(self.path).path != "/callback":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        landed["path"] = self.path
        body = b"<!doctype html><title>back at the app</title><p id=done>done</p>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


server = http.server.HTTPServer(("127.0.0.1", int(redirect_port)), Callback)
threading.Thread(target=server.serve_forever, daemon=True).start()

os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager download anything
options = webdriver.ChromeOptions()
options.binary_location = os.environ.get("CHROMIUM", "/usr/bin/chromium")
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={tempfile.mkdtemp(prefix='oada-chromium-')}"):
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service(os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")), options=options)
driver.set_page_load_timeout(20)
result = {}
try:
    driver.get(authorization_url)
    wait = WebDriverWait(driver, 15)
    wait.until(ec.presence_of_element_located((By.NAME, "username")))
    result["login_title"] = driver.title
    driver.find_element(By.NAME, "username").send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait.until(ec.presence_of_element_located((By.ID, "approve")))
    result["consent_client_name"] = driver.find_element(By.ID, "client-name").text
    result["consent_trust"] = driver.find_element(By.ID, "trust").text
    result["consent_scopes"] = [li.text for li in driver.find_elements(By.CSS_SELECTOR, "li.scope")]
    puc = driver.find_elements(By.ID, "puc")
    result["consent_puc"] = puc[0].get_attribute("href") if puc else None
    driver.find_element(By.ID, "approve" if decision == "approve" else "deny").click()
    wait.until(lambda d: "path" in landed and d.find_elements(By.ID, "done"))
    query = parse_qs(urlparse(landed["path"]).query)
    result["landed_path"] = urlparse(landed["path"]).path
    result["landed"] = {k: v[0] for k, v in query.items()}
    result["browser_url"] = driver.current_url
finally:
    driver.quit()
    server.shutdown()
print(json.dumps(result))
