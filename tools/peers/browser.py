"""A real browser in a namespace: Debian's headless Chromium under its chromedriver,
driven by selenium a line at a time (one JSON command on stdin, one JSON result on
stdout), so that a test can act between two steps (restart the board, talk from
another namespace).

    browser.py SCREENSHOT_DIR

Commands ({"op": ...}):
  get     url                       -> url (where it landed), title, text (the body's)
  fill    fields {name: value}, form (CSS of the form, else the first field's), submit
          (CSS of its button) -> url, title, text
  click   css                       -> url, title, text
  find    css                       -> texts of the matching elements
  attr    css, name                 -> the attribute of each matching element
  shot    name                      -> path of SCREENSHOT_DIR/name.png
  quit
Chromium as root, with the flags this machine needs (no sandbox, no background
networking, a fresh profile)."""
import json
import sys
import tempfile

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.select import Select
from selenium.webdriver.support.wait import WebDriverWait

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1100,1300")

shots = sys.argv[1]
profile = tempfile.mkdtemp(prefix="chromium-")
opts = webdriver.ChromeOptions()
opts.binary_location = "/usr/bin/chromium"
for f in FLAGS + ("--user-data-dir=" + profile,):
    opts.add_argument(f)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
driver.set_page_load_timeout(20)


def page():
    return {"url": driver.current_url, "title": driver.title,
            "text": driver.find_element(By.TAG_NAME, "body").text}


def submit(button):
    """Click, then wait for the page the click leads to."""
    old = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 20).until(expected_conditions.staleness_of(old))
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.readyState") == "complete")
    return page()


def fill(c):
    first = None
    root = driver.find_element(By.CSS_SELECTOR, c["form"]) if "form" in c else driver
    for name, value in c["fields"].items():
        el = root.find_element(By.NAME, name)
        first = first or el
        if el.tag_name == "select":
            Select(el).select_by_visible_text(value)
        else:
            el.clear()
            el.send_keys(value)
    return submit(first.find_element(By.XPATH, "ancestor::form").find_element(
        By.CSS_SELECTOR, c.get("submit", "button")))


def shot(c):
    path = "%s/%s.png" % (shots, c["name"])
    driver.save_screenshot(path)
    return {"path": path}


OPS = {
    "get": lambda c: (driver.get(c["url"]), page())[1],
    "fill": fill,
    "click": lambda c: submit(driver.find_element(By.CSS_SELECTOR, c["css"])),
    "find": lambda c: {"texts": [e.text for e in driver.find_elements(By.CSS_SELECTOR, c["css"])]},
    "attr": lambda c: {"values": [e.get_attribute(c["name"]) for e in
                                  driver.find_elements(By.CSS_SELECTOR, c["css"])]},
    "shot": shot,
}
print("ready", flush=True)
try:
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "quit":
            break
        try:
            result = OPS[cmd["op"]](cmd)
        except Exception as e:  # the test reads what went wrong
            result = {"error": repr(e)}
        print(json.dumps(result), flush=True)
finally:
    driver.quit()
