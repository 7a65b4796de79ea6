"""Drives `reagent serve` and an HTML report in Debian's headless Chromium,
through Selenium and /usr/bin/chromedriver. Run by tests/all/browser.rs with
one JSON argument: {url, login, reagent, workspace, shots}. Prints what it
checked; exits non-zero on the first check that fails.
"""

import json
import pathlib
import subprocess
import sys
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By


def check(cond, what):
    if not cond:
        raise AssertionError(what)
    print("ok:", what, flush=True)


def main_text(d):
    """The text of <main>, read in one step: the page's live script may
    swap <main> at any moment, which makes a held element stale."""
    return d.execute_script("var m = document.querySelector('main'); return m ? m.innerText : ''")


def fresh(act, tries=10):
    """Runs `act`, again if the live script swapped the page under it."""
    for _ in range(tries - 1):
        try:
            return act()
        except StaleElementReferenceException:
            time.sleep(0.1)
    return act()


def wait_for(pred, what, limit=90.0):
    start = time.time()
    while time.time() - start < limit:
        if pred():
            print("ok:", what, flush=True)
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {limit} s: {what}")


def main():
    args = json.loads(sys.argv[1])
    shots = pathlib.Path(args["shots"])
    shots.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu",
              "--disable-dev-shm-usage", "--window-size=1100,1400"):
        opts.add_argument(a)
    d = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    try:
        url = args["url"]
        # Without the token: refused.
        d.get(url)
        body = d.find_element(By.TAG_NAME, "body").text
        check("needs its token" in body, "a request without the token is refused")
        d.save_screenshot(str(shots / "refused.png"))

        # The login link: the campaigns page, with the plan waiting.
        d.get(args["login"])
        wait_for(lambda: "Campaigns" in fresh(lambda: d.find_element(By.TAG_NAME, "h1").text),
                 "the login link opens the campaigns page")
        check("request 1 (plan)" in main_text(d),
              "the waiting plan shows on the campaigns page")
        d.save_screenshot(str(shots / "campaigns.png"))

        # Approve the plan in the browser.
        d.get(url + "approvals")
        fresh(lambda: d.find_element(By.CSS_SELECTOR, "#r1 input[name=note]")
              .send_keys("approved in the browser"))
        d.save_screenshot(str(shots / "approvals.png"))
        fresh(lambda: d.find_element(By.CSS_SELECTOR, "#r1 button[value=approve]").click())
        wait_for(lambda: "approved by" in main_text(d),
                 "the approval is confirmed on the page")

        # The campaign runs (jobs wake the workspace) and, short of budget
        # for its confirmation, asks for more: the request appears on the
        # approvals page live, and is approved there.
        wait_for(lambda: "budget-increase" in main_text(d),
                 "the budget request appears on the approvals page, live")
        req = d.execute_script(
            "var s=[...document.querySelectorAll('main section')].find(function(x){"
            "return x.querySelector('h2').innerText.indexOf('budget-increase')>=0;});"
            "return s ? s.id : null;")
        check(req is not None, f"the budget request has a form ({req})")
        fresh(lambda: d.find_element(By.CSS_SELECTOR, f"#{req} input[name=note]")
              .send_keys("more for the confirmation"))
        d.save_screenshot(str(shots / "budget.png"))
        fresh(lambda: d.find_element(By.CSS_SELECTOR, f"#{req} button[value=approve]").click())
        wait_for(lambda: "budget-increase for campaign 1) approved by" in main_text(d),
                 "the budget increase is approved in the browser")

        # The campaign confirms and ends; its page follows live, without a
        # reload.
        d.get(url + "campaigns/1")
        d.execute_script("window.__loaded_once = 1;")
        wait_for(lambda: "finished (stage done)" in main_text(d),
                 "the campaign page shows the campaign finished, live")
        check(d.execute_script("return window.__loaded_once") == 1,
              "the page was never reloaded")
        check(int(d.execute_script("return document.body.dataset.updates || '0'")) > 0,
              "server-sent events updated the page")
        sizes = fresh(lambda: [(s.size["width"], s.size["height"])
                               for s in d.find_elements(By.CSS_SELECTOR, "main svg")])
        check(len(sizes) == 6, f"six plots on the campaign page ({len(sizes)})")
        check(all(w > 100 and h > 50 for w, h in sizes), "every plot is drawn at a size")
        check(d.execute_script("return document.scripts.length") == 1,
              "the page runs only its own script")
        check(d.execute_script("return window.__xss") is None,
              "markup a strategy or job wrote did not run")
        check("<img src=x onerror" in main_text(d),
              "it shows as text")
        d.save_screenshot(str(shots / "campaign.png"))

        # The HTML report, opened from a file.
        report = pathlib.Path(args["workspace"]) / "report.html"
        subprocess.run([args["reagent"], "report", "1", "--format", "html", "-o", str(report),
                        "--workspace", args["workspace"]], check=True, capture_output=True)
        d.get(report.as_uri())
        svgs = d.find_elements(By.TAG_NAME, "svg")
        check(len(svgs) == 6, f"six plots in the HTML report ({len(svgs)})")
        check(all(s.size["width"] > 100 for s in svgs), "the report's plots render")
        circles = d.execute_script(
            "return document.querySelector('svg').querySelectorAll('circle').length")
        check(circles > 0, f"the progress plot has its points ({circles})")
        check(d.execute_script("return window.__xss") is None,
              "the report runs nothing a strategy or job wrote")
        d.save_screenshot(str(shots / "report.png"))
    finally:
        d.quit()


if __name__ == "__main__":
    main()
