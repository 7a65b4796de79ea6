#!/usr/bin/env bash
# Installs Debian's headless browser for the browser tests
# (tests/all/browser.rs): chromium and its WebDriver, chromedriver. Needs
# root (CI runs as root); does nothing when both are already there.
# Nothing is downloaded at test time: Selenium is given these two paths.
set -euo pipefail
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null
/usr/bin/chromium --version
