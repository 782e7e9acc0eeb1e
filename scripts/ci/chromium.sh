#!/usr/bin/env bash
# Chromium and ChromeDriver from Debian: the browser the dashboard test loads
# the page in (tests/dashboard/test_dashboard_browser.py).  Idempotent; needs
# root for apt-get.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    echo "chromium.sh: $(chromium --version) and $(chromedriver --version | head -1) are installed"
    exit 0
fi
timeout 600 apt-get update -qq
timeout 1200 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver
chromium --version
chromedriver --version
