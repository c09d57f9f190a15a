"""Run the app for tests and benchmarks: a Streamlit server on a free loopback port and headless
Debian chromium drivers, and a throwaway PostgreSQL server. Used by the tests and by bench/app.py,
bench/load_app.py and bench/cases.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AppServer:
    proc: subprocess.Popen
    url: str
    log_path: Path
    started: float
    ready_s: float

    def rss_mb(self) -> tuple[float, float]:
        """(current, peak) resident memory of the server process, from /proc."""
        fields = {}
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            fields[key] = value.strip()
        kb = lambda k: float(fields.get(k, "0 kB").split()[0]) / 1024  # noqa: E731
        return kb("VmRSS"), kb("VmHWM")

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the server process has used so far, from /proc."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_app(env: dict[str, str] | None = None, log_path: Path | None = None, timeout: float = 90) -> AppServer:
    """`streamlit run app.py` on 127.0.0.1:<free port>; returns once /_stcore/health answers."""
    port = free_port()
    log_path = log_path or Path(os.environ.get("TMPDIR", "/tmp")) / f"cxr_app_{port}.log"
    started = time.perf_counter()
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.address", "127.0.0.1", "--server.headless", "true"],
                            cwd=PROJECT_ROOT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - started < timeout:
        try:
            urllib.request.urlopen(url + "/_stcore/health", timeout=2)
            return AppServer(proc, url, log_path, started, time.perf_counter() - started)
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.25)
    proc.kill()
    raise RuntimeError(f"the app did not start; see {log_path}")


def make_browser(width: int = 1280, height: int = 800, offline: bool = False) -> Any:
    """Headless chromium. `offline`: every host but this machine is unreachable, as on a hospital network, and the
    browser keeps its network log (`outside_requests`)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}", "--disable-gpu"):
        options.add_argument(arg)
    logs = {"browser": "ALL"}  # the page's console, for failure messages
    if offline:
        options.add_argument("--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost")
        logs["performance"] = "ALL"
    options.set_capability("goog:loggingPrefs", logs)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(width, height)
    return driver


def outside_requests(driver: Any) -> list[str]:
    """The URLs an `offline` browser asked for beyond this machine since the last call (its network log)."""
    import json
    from urllib.parse import urlparse

    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return [u for u in urls if urlparse(u).scheme in ("http", "https", "ws", "wss")
            and urlparse(u).hostname not in ("127.0.0.1", "localhost")]


READER_BOX = "input[aria-label='Your name (reviews and audit)']"  # the sidebar's reader name box
# JavaScript for the Viewer's films (cxr_app.film_component): their canvases, each inside its component's shadow
# root, and the first one.
FILMS = ("[...document.querySelectorAll('[data-testid=stBidiComponentIsolated]')]"
         ".map(e => e.shadowRoot && e.shadowRoot.querySelector('canvas.view')).filter(Boolean)")
FILM_CANVAS = f"{FILMS}[0]"
# how many films are drawn with the evidence overlay and show its legend
OVERLAID_FILMS = (f"return {FILMS}.filter(c => c.dataset.overlay === 'true' && "
                  "!c.getRootNode().querySelector('.legend').hidden).length")
# each film's drawn state, for a failure's message
FILM_STATES = (f"return {FILMS}.map(c => ({{...c.dataset, legendHidden: c.getRootNode().querySelector('.legend').hidden, "
               "width: c.clientWidth, height: c.clientHeight}))")


def film_control(name: str) -> str:
    """JavaScript for the film's "level" (Level (brightness)) or "width" (Window (contrast)) range input."""
    return f"({FILM_CANVAS}).getRootNode().querySelector('input.{name}')"


def sign_in(driver: Any, name: str) -> None:
    """Type the reader's name once the sidebar has rendered it, and wait until the page holds it (the name reaches
    the server before the next action)."""
    wait_for(driver, lambda: driver.find_elements("css selector", READER_BOX), what="the reader's name box")
    driver.find_element("css selector", READER_BOX).send_keys(name + "\n")
    wait_for(driver, lambda: driver.find_element("css selector", READER_BOX).get_attribute("value") == name,
             what="the reader's name")
    time.sleep(0.5)


def nav(driver: Any, page: str) -> None:
    """Open `page` ("Worklist", "Training"...) from the sidebar's navigation, as a user clicks it."""
    next(a for a in driver.find_elements("css selector", "[data-testid=stSidebarNav] a") if page in a.text).click()


def body_text(driver: Any) -> str:
    return driver.find_element("tag name", "body").text


def wait_for(driver: Any, predicate: Callable[[], Any], timeout: float = 90, what: str = "condition") -> float:
    """Poll until predicate() is truthy; returns the seconds waited."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if predicate():
                return time.perf_counter() - t0
        except Exception:
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}; page text: {body_text(driver)[:1500]}")


ROW_PX, HEADER_PX = 35, 35  # Streamlit's dataframe (glide data grid): row and header heights


def shown_tables(driver: Any) -> list[Any]:
    """The page's visible dataframes (those of a tab not shown are left out)."""
    return [g for g in driver.find_elements("css selector", "[data-testid=stDataFrame]") if g.is_displayed()]


def tick_row(driver: Any, row: int, tab: int = 0) -> None:
    """Tick the selection box of `row` (0: the first data row) in the `tab`-th visible table. The grid is a canvas,
    so the click lands by position, once the table is drawn (it draws after the caption above it; a rerun may be
    redrawing it)."""
    from selenium.webdriver.common.action_chains import ActionChains

    wait_for(driver, lambda: len(shown_tables(driver)) > tab, what="the table")
    grid = shown_tables(driver)[tab]
    # its top rows in view, below Streamlit's header, however tall the grid
    driver.execute_script("arguments[0].scrollIntoView({block: 'start'}); window.scrollBy(0, -120)", grid)
    time.sleep(0.3)
    w, h = grid.size["width"], grid.size["height"]
    ActionChains(driver).move_to_element_with_offset(
        grid, -w / 2 + 18, -h / 2 + HEADER_PX + ROW_PX * row + ROW_PX / 2).click().perform()


def upload(driver: Any, paths: list[Path], tries: int = 3, timeout: float = 90) -> None:
    """Give `paths` to the page's file input and wait until the page has taken them: the Viewer's progress bar
    ("Analysing..." / "Analysed...") or a file's name shows. Files given while Streamlit replaces the input (a rerun
    just after the page loaded or a name was typed) are lost and the uploader stays empty: they are given again, up to
    `tries` times (the same file dropped twice is one case)."""
    names = "\n".join(str(p) for p in paths)
    taken = lambda: any(t in body_text(driver) for t in ("Analysing", "Analysed", *(Path(p).name for p in paths)))  # noqa: E731
    for _ in range(tries):
        wait_for(driver, lambda: driver.find_elements("css selector", "input[type=file]"), what="the file input")
        try:
            driver.find_element("css selector", "input[type=file]").send_keys(names)
        except Exception:  # replaced under our feet: find it again
            continue
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            try:
                if taken():
                    return
            except Exception:
                pass
            time.sleep(0.2)
    raise AssertionError(f"the upload was not taken after {tries} tries; page text: {body_text(driver)[:1500]}")


def results_shown(driver: Any, n: int) -> bool:
    return body_text(driver).count("Download PDF report") >= n


class PostgresUnavailable(RuntimeError):
    """PostgreSQL cannot be started here (not installed, or root without a `postgres` user)."""


def _postgres_bin() -> str | None:
    """Debian's PostgreSQL server binaries (newest version), or None."""
    import glob

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
    if found:
        return os.path.dirname(found[-1])
    postgres = shutil.which("postgres")
    return os.path.dirname(os.path.realpath(postgres)) if postgres else None


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on a free loopback port in a temp folder, stopped by its pid; yields its
    SQLAlchemy URL. Raises PostgresUnavailable (say why, and skip) where it cannot run."""
    import pwd
    import signal
    import tempfile

    bin_dir = _postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    folder = tempfile.mkdtemp(prefix="cxr-pg-")  # not under pytest's root-only tmp folder
    demote: dict[str, Any] = {}
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as Debian's `postgres` user
        try:
            entry = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root without a `postgres` user: PostgreSQL cannot be started") from None
        shutil.chown(folder, entry.pw_uid, entry.pw_gid)

        def as_postgres() -> None:
            os.setgid(entry.pw_gid)
            os.setuid(entry.pw_uid)

        demote = {"preexec_fn": as_postgres}
    data, port = os.path.join(folder, "data"), free_port()
    init = subprocess.run([f"{bin_dir}/initdb", "-D", data, "-A", "trust", "-U", "cxr"], capture_output=True,
                          text=True, **demote)
    if init.returncode != 0:
        raise RuntimeError(f"initdb failed: {init.stderr}")
    server = subprocess.Popen([f"{bin_dir}/postgres", "-D", data, "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                               "-k", folder], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **demote)
    try:
        for _ in range(150):
            if subprocess.run([f"{bin_dir}/pg_isready", "-h", "127.0.0.1", "-p", str(port)],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        subprocess.run([f"{bin_dir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "cxr", "cases"], check=True,
                       capture_output=True)
        yield f"postgresql+psycopg://cxr@127.0.0.1:{port}/cases"
    finally:
        server.send_signal(signal.SIGINT)  # fast shutdown
        server.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)


def c_store(port: int, ds: Any, contexts: tuple[str, ...] | None = None, called: str = "CXRAI") -> int:
    """Send `ds` to the C-STORE node on 127.0.0.1:`port` as a modality would (pynetdicom's SCU), retrying the
    association while the node loads its model; the C-STORE status (-1 when none came back)."""
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation

    ae = AE(ae_title="MODALITY")
    for context in contexts or (DigitalXRayImageStorageForPresentation,):
        ae.add_requested_context(context)
    for _ in range(600):
        assoc = ae.associate("127.0.0.1", port, ae_title=called)
        if assoc.is_established:
            break
        time.sleep(0.2)
    status = assoc.send_c_store(ds)
    assoc.release()
    return int(status.Status) if status else -1

