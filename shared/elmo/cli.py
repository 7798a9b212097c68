"""`elmo`: run the local stack, manage topics, replay fixtures, tail topics, export contracts."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from elmo.runtime.settings import ConnectionSettings

app = typer.Typer(
    help="Elmo: a Kafka-native engine that answers customers on social media.", no_args_is_help=True, pretty_exceptions_enable=False
)
kafka_app = typer.Typer(
    help="The local Apache Kafka (KRaft): one node, or three with ELMO_LOCAL_KAFKA_BROKERS=3.", no_args_is_help=True
)
redis_app = typer.Typer(help="The local Redis server.", no_args_is_help=True)
topics_app = typer.Typer(help="Topics of the registry in elmo.contracts.topics.", no_args_is_help=True)
schema_app = typer.Typer(help="Event contracts as JSON Schema and AsyncAPI.", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(redis_app, name="redis")
app.add_typer(topics_app, name="topics")
app.add_typer(schema_app, name="schema")
train_app = typer.Typer(help="Train a model into the model store (ELMO_MODEL_STORE) and make it current.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate the current models on their held-out sets.", no_args_is_help=True)
data_app = typer.Typer(help="Test and training data fetched from package registries (never committed).", no_args_is_help=True)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")
app.add_typer(data_app, name="data")
deploy_app = typer.Typer(help="Kubernetes manifests generated from the registry (deploy/k8s).", no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")
brand_app = typer.Typer(help="The brand's data: catalog, knowledge base and profile (ELMO_BRAND_DIR).", no_args_is_help=True)
app.add_typer(brand_app, name="brand")
models_app = typer.Typer(
    help="The model registry (ELMO_MODEL_STORE): versions, statuses, the promotion gate, rollback.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


def _connections() -> ConnectionSettings:
    return ConnectionSettings()


def _stack():  # noqa: ANN202 - LocalStackSettings, imported lazily to keep `elmo --help` fast
    from elmo.local.stack_settings import LocalStackSettings, find_repo_root

    return LocalStackSettings.from_env(find_repo_root())


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1)


@app.callback()
def main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress to stderr.")) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", stream=sys.stderr)
    for noisy in ("kafka", "aiokafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING if not verbose else logging.INFO)


# --- local infrastructure --------------------------------------------------------------------


@kafka_app.command("up")
def kafka_up() -> None:
    """Start the broker(s) (resolving the jars from Maven Central on first use); returns when they accept produce requests."""
    from elmo.local.kafka_broker import kafka_up as start

    start(_stack())


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the broker(s) this project started (no-op if none)."""
    from elmo.local.kafka_broker import kafka_down as stop

    stop(_stack())


@kafka_app.command("status")
def kafka_status(quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the exit code: 0 when running.")) -> None:
    """Show whether the project's broker runs (each node of a cluster); exit code 1 unless all do."""
    from elmo.local.kafka_broker import kafka_status as status

    state = status(_stack())
    if not quiet:
        typer.echo(json.dumps(state, default=str))
    if not state["running"]:
        raise typer.Exit(1)


@redis_app.command("up")
def redis_up() -> None:
    """Start redis-server, or reuse one that already answers on the configured port."""
    from elmo.local.redis_server import redis_up as start

    start(_stack())


@redis_app.command("down")
def redis_down() -> None:
    """Stop the Redis this project started (a reused one is left alone)."""
    from elmo.local.redis_server import redis_down as stop

    stop(_stack())


# --- topics ----------------------------------------------------------------------------------


@topics_app.command("create")
def topics_create() -> None:
    """Create every topic of the registry that does not exist yet (idempotent), one replica per local broker."""
    from elmo.tools.topic_admin import create_topics

    created = create_topics(_connections().kafka_bootstrap_servers, replication_factor=_stack().kafka_replication_factor)
    typer.echo(f"created {len(created)} topic(s)" + (f": {', '.join(created)}" if created else " (all existed)"))


@topics_app.command("list")
def topics_list() -> None:
    """Show each registry topic: partitions, retention, cleanup policy, and whether it exists."""
    from elmo.tools.topic_admin import describe_topics

    for state in describe_topics(_connections().kafka_bootstrap_servers):
        topic = state.topic
        retention = "forever" if topic.retention_ms < 0 else f"{topic.retention_ms / 86_400_000:g}d"
        exists = f"{state.partitions} partitions" if state.exists else "MISSING"
        typer.echo(f"{topic.name:28} {exists:14} retention={retention:8} cleanup={topic.cleanup_policy.value:8} {topic.description}")


# --- running the chain -----------------------------------------------------------------------


def _supervisor_pid_file() -> Path:
    return _stack().state_dir / "supervisor.pid"


def _running_pid(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # a supervisor this process started is a zombie until reaped
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


@app.command("up")
def up(
    foreground: bool = typer.Option(False, "--foreground", help="Supervise in this terminal until Ctrl-C."),
    skip_backlog: bool = typer.Option(
        False, "--skip-backlog", help="First move the services' consumer groups past records earlier runs left unread."
    ),
) -> None:
    """Start Kafka and Redis, create topics, and run every implemented service under a supervisor."""
    from elmo.local.kafka_broker import kafka_up as start_kafka
    from elmo.local.redis_server import redis_up as start_redis
    from elmo.tools.supervisor import implemented_services

    stack = _stack()
    start_kafka(stack)
    start_redis(stack)
    topics_create()
    if skip_backlog and _running_pid(_supervisor_pid_file()) is None:
        _skip_backlog()
    services = implemented_services()
    typer.echo(f"services: {', '.join(services) or 'none implemented yet'}")
    command = [sys.executable, "-m", "elmo.tools.supervisor"]
    env = {**os.environ, "ELMO_LOGS_DIR": str(stack.state_dir / "logs")}
    if foreground:
        os.execve(sys.executable, command, env)
    pid_file = _supervisor_pid_file()
    if pid := _running_pid(pid_file):
        typer.echo(f"supervisor already running (pid {pid})")
        return
    (stack.state_dir / "logs").mkdir(parents=True, exist_ok=True)
    with (stack.state_dir / "logs" / "supervisor.log").open("ab") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid))
    typer.echo(f"supervisor started (pid {process.pid}); logs in {stack.state_dir / 'logs'}; `elmo down` stops all")


@app.command("down")
def down(keep_infra: bool = typer.Option(False, "--keep-infra", help="Stop the services but leave Kafka and Redis up.")) -> None:
    """Stop the services (gracefully), then the Kafka and Redis this project started."""
    pid_file = _supervisor_pid_file()
    if pid := _running_pid(pid_file):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _running_pid(pid_file) and time.monotonic() < deadline:
            time.sleep(0.2)
        typer.echo("services stopped")
    pid_file.unlink(missing_ok=True)
    if not keep_infra:
        kafka_down()
        redis_down()


# --- fixtures and inspection -----------------------------------------------------------------


@app.command("replay")
def replay(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, help="JSON-lines fixture, one event per line."),
    topic: str = typer.Option("elmo.inbound", "--topic", "-t", help="Topic to publish to."),
    rate: float = typer.Option(0.0, "--rate", help="Events per second (0: as fast as possible)."),
    loop: bool = typer.Option(False, "--loop", help="Repeat the file (with fresh event ids) until --limit or Ctrl-C."),
    limit: int | None = typer.Option(None, "--limit", help="Stop after this many events."),
) -> None:
    """Publish fixture events keyed by conversation_id."""
    from elmo.tools.replay import FixtureError
    from elmo.tools.replay import replay as run_replay

    try:
        report = run_replay(file, topic, _connections().kafka_bootstrap_servers, rate or None, loop, limit)
    except FixtureError as error:
        _fail(str(error))
    typer.echo(f"sent {report.sent} events to {topic} in {report.seconds:.2f} s ({report.rate:.0f}/s)", err=True)


@app.command("tail")
def tail(
    topic: str = typer.Argument(..., help="Topic to read."),
    from_beginning: bool = typer.Option(False, "--from-beginning", help="Start at the earliest retained record."),
    max_records: int | None = typer.Option(None, "--max", help="Exit after this many records."),
    idle_timeout: float | None = typer.Option(None, "--idle-timeout", help="Exit after this many seconds without records."),
    meta: bool = typer.Option(False, "--meta", help="Print partition, offset, key and headers too."),
) -> None:
    """Print a topic's events, one JSON line each."""
    from elmo.tools.tail import tail as run_tail

    for record in run_tail(topic, _connections().kafka_bootstrap_servers, from_beginning, max_records, idle_timeout):
        typer.echo(json.dumps(record if meta else record["value"], default=str))


@app.command("demo")
def demo(
    script: Path = typer.Option(Path("tests/e2e/fixtures/conversations.json"), help="Scripted conversations to play."),
    voice: bool = typer.Option(True, "--voice/--no-voice", help="Also play each conversation as synthesised voice notes."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Leave the chain running afterwards."),
    ready_timeout: float = typer.Option(180.0, help="Seconds to wait for every service to be ready."),
) -> None:
    """Start everything, play the scripted conversations (text and voice), print each turn, stop."""
    from elmo.local.kafka_broker import kafka_status as broker_status
    from elmo.local.redis_server import redis_status
    from elmo.tools.conversation import ChainClient
    from elmo.tools.demo import load_script, play_conversation, wait_until_ready
    from elmo.tools.supervisor import SERVICE_HTTP_PORTS, implemented_services

    conversations = load_script(script)
    stack = _stack()
    kafka_was_up = bool(broker_status(stack)["running"])
    redis_was_up = bool(redis_status(stack).get("answers_ping"))
    supervisor_was_up = _running_pid(_supervisor_pid_file()) is not None
    # A demo should not wait behind records that tests or benchmarks left in the topics.
    up(foreground=False, skip_backlog=True)
    unanswered = 0
    try:
        services = [s for s in implemented_services() if s != "ingest"]
        not_ready = wait_until_ready({s: SERVICE_HTTP_PORTS[s] for s in services}, ready_timeout, echo=typer.echo)
        if not_ready:
            _fail(f"services not ready: {', '.join(not_ready)} (logs in {stack.state_dir / 'logs'})")
        with ChainClient(_connections().kafka_bootstrap_servers, reply_timeout_s=60.0) as client:
            for as_voice in (False, True) if voice else (False,):
                for conversation in conversations:
                    unanswered += play_conversation(client, conversation, as_voice, echo=typer.echo).unanswered
    finally:
        # Stop only what the demo started.
        if not keep_running and not supervisor_was_up:
            down(keep_infra=True)
        if not keep_running and not kafka_was_up:
            kafka_down()
        if not keep_running and not redis_was_up:
            redis_down()
    if unanswered:
        _fail(f"{unanswered} turn(s) got no reply")


@app.command("simulate")
def simulate(
    users: int = typer.Option(20, "--users", min=1, help="Simulated shoppers per arm."),
    sessions: int = typer.Option(8, "--sessions", min=1, help="Sessions (conversations) per shopper."),
    turns: int = typer.Option(2, "--turns", min=1, help="Messages per session."),
    seed: int = typer.Option(7, "--seed", help="Same seed: same shoppers, messages and reactions to the same replies."),
    learning: str = typer.Option("both", "--learning", help="on: reactions go to elmo.feedback; off: they do not; both: off, then on."),
    think: float = typer.Option(1.0, "--think", min=0.0, help="Seconds between reacting and the next message."),
    workers: int = typer.Option(4, "--workers", min=1, help="Shoppers talking at the same time."),
    probes: int = typer.Option(3, "--probes", min=0, help="Timed purchase and click probes after the arms."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the report here."),
    keep_running: bool = typer.Option(False, "--keep-running", help="Leave a chain this command started running."),
    ready_timeout: float = typer.Option(180.0, help="Seconds to wait for every service to be ready."),
) -> None:
    """Simulated shoppers with hidden tastes talk to the chain and react; does learning help?"""
    import uuid as uuid_module

    from elmo.brand.catalog import load_catalog
    from elmo.tools.demo import wait_until_ready
    from elmo.tools.simulate import SimulationConfig, SimulationReport, describe, probe_click, probe_purchase, run_arm, shoppers, window_rows
    from elmo.tools.supervisor import SERVICE_HTTP_PORTS, implemented_services

    arms = {"on": [True], "off": [False], "both": [False, True]}.get(learning)
    if arms is None:
        _fail("--learning is on, off or both")
    run_id = uuid_module.uuid4().hex[:6]
    stack = _stack()
    supervisor_was_up = _running_pid(_supervisor_pid_file()) is not None
    if not supervisor_was_up:
        # A chain of our own counts popularity apart from earlier runs (the arms must not inherit it).
        os.environ.setdefault("ELMO_INTERACTIONS_KEY_PREFIX", f"elmo-sim-{run_id}:interactions")
    up(foreground=False, skip_backlog=True)
    config = SimulationConfig(users=users, sessions=sessions, turns=turns, seed=seed, think_s=think, workers=workers)
    report = SimulationReport(run_id, {**config.__dict__, "odds": config.odds.__dict__, "learning": learning})
    try:
        services = [s for s in implemented_services() if s != "ingest"]
        not_ready = wait_until_ready({s: SERVICE_HTTP_PORTS[s] for s in services}, ready_timeout, echo=typer.echo)
        if not_ready:
            _fail(f"services not ready: {', '.join(not_ready)} (logs in {stack.state_dir / 'logs'})")
        connections = _connections()
        catalog = load_catalog()
        for on in arms:
            started = time.monotonic()
            windows = run_arm(connections.kafka_bootstrap_servers, catalog, config, on, run_id, echo=typer.echo)
            report.arms["on" if on else "off"] = window_rows(windows)
            typer.echo(f"  {time.monotonic() - started:.0f} s")
        people = shoppers(catalog, max(probes, 1), seed + 1)
        for number in range(probes):
            report.probes.append(probe_purchase(connections.kafka_bootstrap_servers, people[number], run_id, number))
            report.probes.append(probe_click(connections.kafka_bootstrap_servers, connections.redis_url, people[number], run_id, number))
    finally:
        # Stop only the services this command started; Kafka and Redis stay up (others may use them).
        if not keep_running and not supervisor_was_up:
            down(keep_infra=True)
    for line in describe(report):
        typer.echo(line)
    if json_out:
        json_out.write_text(report.to_json())


def _skip_backlog() -> None:
    """With the services stopped: move their consumer groups to the end of their input topics."""
    from elmo.contracts.chain import CHAIN
    from elmo.runtime.settings import RuntimeSettings
    from elmo.tools.topic_admin import skip_to_end

    bootstrap = _connections().kafka_bootstrap_servers
    skipped = sum(skip_to_end(bootstrap, RuntimeSettings().group_for(hop.service), hop.consumes.name) for hop in CHAIN)
    if skipped:
        typer.echo(f"skipped {skipped} records left unread in the chain's topics by earlier runs", err=True)


@app.command("chat")
def chat(
    user: str = typer.Option("chat-user", "--user", help="Who you are to the chain (recommendations are per user)."),
    channel: str = typer.Option("web", help="Channel the messages claim to come from."),
    audio: list[Path] = typer.Option([], "--audio", help="Send this voice note first (repeatable); then chat by text."),
    timeout: float = typer.Option(60.0, help="Seconds to wait for each reply."),
) -> None:
    """Talk to the running chain (`elmo up`) through Kafka; shows what it understood and its reply."""
    from elmo.tools.conversation import ChainClient, describe_turn

    conversation_id = f"chat-{user}-{int(time.time())}"
    with ChainClient(_connections().kafka_bootstrap_servers, reply_timeout_s=timeout) as client:
        for note in audio:
            if not note.is_file():
                _fail(f"no such audio file: {note}")
            for line in describe_turn(client.send_voice(conversation_id, user, channel, note)):
                typer.echo(line)
        typer.echo("type a message (empty line or Ctrl-D to quit)", err=True)
        while True:
            try:
                text = input("you> ").strip()
            except EOFError:
                break
            if not text:
                break
            for line in describe_turn(client.say(conversation_id, user, channel, text)):
                typer.echo(line)


# --- models ----------------------------------------------------------------------------------


def _store(store: Path | None):  # noqa: ANN202 - ArtifactStore
    from elmo.models.artifacts import ArtifactStore
    from elmo.runtime.settings import RuntimeSettings

    return ArtifactStore(store or RuntimeSettings().model_store)


def _test_data_dir() -> Path:
    return _stack().state_dir / "test-data"


STORE_OPTION = typer.Option(None, "--store", help="Model store directory (default: ELMO_MODEL_STORE).")
JSON_REPORT_OPTION = typer.Option(False, "--json", help="Print the whole report as JSON instead of one summary line.")


def _trained(store: Path | None, version: object, summary: str, report: dict, as_json: bool) -> None:
    """A trained version: one line a person can read (the whole report saved beside the store's
    versions, under reports/), or the whole report as JSON with --json."""
    document = {"version": version.version, "path": str(version.path), **report}
    if as_json:
        typer.echo(json.dumps(document, default=str))
        return
    reports = _store(store).root / "reports"
    reports.mkdir(parents=True, exist_ok=True)
    saved = reports / f"{version.kind}-{version.version}.json"  # type: ignore[attr-defined]
    saved.write_text(json.dumps(document, indent=2, default=str) + "\n")
    typer.echo(f"{version.kind} {version.version}: {summary}; full report in {saved}")  # type: ignore[attr-defined]


@train_app.command("nlu")
def train_nlu(
    seed: int = typer.Option(13, help="Random seed: same data and seed, same model."),
    store: Path | None = STORE_OPTION,
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing when a current model exists."),
    as_json: bool = JSON_REPORT_OPTION,
) -> None:
    """Train the intent head on shared/elmo/models/training_data/intents/intents.jsonl; print held-out metrics."""
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.models.intent_model import MODEL_KIND, train

    if if_missing and _store(store).current_version(MODEL_KIND):
        typer.echo(f"{MODEL_KIND}: current version {_store(store).current_version(MODEL_KIND)} kept")
        return

    version, report = train(_store(store), SentenceEmbedder(), seed=seed)
    summary = f"held-out accuracy {report.accuracy:.3f}, macro-F1 {report.macro_f1:.3f} on {report.support} questions"
    _trained(store, version, summary, report.as_dict(), as_json)


@train_app.command("sentiment")
def train_sentiment(
    seed: int = typer.Option(13, help="Random seed: same data and seed, same model."),
    store: Path | None = STORE_OPTION,
    tweets_only: bool = typer.Option(False, "--tweets-only", help="Only the tweets of the rated data (fast; for tests)."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing when a current model exists."),
    as_json: bool = JSON_REPORT_OPTION,
) -> None:
    """Train the sentiment head on the VADER human-rated data plus our brand examples."""
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.tools.test_data import fetch_vader_ratings
    from elmo.models.sentiment_model import MODEL_KIND, find_vader_directory, train

    if if_missing and _store(store).current_version(MODEL_KIND):
        typer.echo(f"{MODEL_KIND}: current version {_store(store).current_version(MODEL_KIND)} kept")
        return

    vader = find_vader_directory(fetch_vader_ratings(_test_data_dir()))
    sources = ("tweets",) if tweets_only else ("tweets", "amazon", "movies", "nyt")
    version, results = train(_store(store), SentenceEmbedder(), vader, seed=seed, vader_sources=sources)
    accuracy = {k: {"model": v["model"]["accuracy"], "vader": v["vader"]["accuracy"]} for k, v in results.items()}
    summary = "held-out accuracy " + ", ".join(f"{k} {v['model']:.3f} (VADER {v['vader']:.3f})" for k, v in accuracy.items())
    _trained(store, version, summary, {"held_out_accuracy": accuracy, "results": results}, as_json)


@train_app.command("recommender")
def train_recommender(
    source: str = typer.Option("simulated", "--from", help="simulated (seeded shoppers over the catalog) or redis (recorded interactions)."),
    seed: int = typer.Option(13, help="Random seed: same data and seed, same model."),
    users: int = typer.Option(5000, help="Simulated users (with --from simulated)."),
    store: Path | None = STORE_OPTION,
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing when a current model exists."),
    replay_from: str | None = typer.Option(
        None, "--replay-from", help="Fit on elmo.feedback instead: earliest, checkpoint (after the last replay) or an ISO time.",
    ),
    users_prefix: str | None = typer.Option(None, "--users-prefix", help="With --replay-from: only users whose id starts with this."),
    topic: str = typer.Option("elmo.feedback", "--topic", help="With --replay-from: the feedback topic to read."),
    force: bool = typer.Option(False, "--force", help="With --replay-from: promote without the gate."),
    no_checkpoint: bool = typer.Option(False, "--no-checkpoint", help="With --replay-from: do not write the replay checkpoint."),
    as_json: bool = JSON_REPORT_OPTION,
) -> None:
    """Fit ALS on interactions; print hit-rate@10 (held-out last purchases) of ALS and of popularity.

    With --replay-from: read the feedback topic up to its end offsets now, fit, register the version
    and put it through the gate (exit code 1 when rejected).
    """
    from services.recommender.als_model import MODEL_KIND
    from services.recommender.commands import train

    if replay_from is not None:
        from elmo.tools.feedback_log import parse_start
        from services.recommender.commands import replay_and_train

        try:
            start = replay_from if replay_from == "checkpoint" else parse_start(replay_from)
        except ValueError as error:
            _fail(str(error))
        registry = _registry(store)
        try:
            report = replay_and_train(
                registry, _connections().kafka_bootstrap_servers, start, seed, topic=topic, users_prefix=users_prefix,
                force=force, write_checkpoint=not no_checkpoint,
            )  # fmt: skip
        except (FileNotFoundError, LookupError, TimeoutError, ValueError, RuntimeError) as error:
            _fail(str(error))
        typer.echo(json.dumps(report.as_dict(), default=str))
        if not report.decision.promoted:
            typer.secho(f"rejected: {report.decision.reason}", fg=typer.colors.RED, err=True)
            raise typer.Exit(1)
        return
    if source not in ("simulated", "redis"):
        _fail("--from is simulated or redis")
    if if_missing and _store(store).current_version(MODEL_KIND):
        typer.echo(f"{MODEL_KIND}: current version {_store(store).current_version(MODEL_KIND)} kept")
        return
    version, evaluation = train(_store(store), source, seed=seed, users=users, redis_url=_connections().redis_url)  # type: ignore[arg-type]
    metrics = evaluation.as_metrics()
    summary = (f"hit-rate@10 {metrics['hit_rate_at_10_als']:.3f} (popularity {metrics['hit_rate_at_10_popularity']:.3f}) "
               f"on {int(metrics['held_out_users'])} held-out last purchases")  # fmt: skip
    _trained(store, version, summary, metrics, as_json)


@train_app.command("rephraser")
def train_rephraser(
    source: str = typer.Option(
        "redis", "--from", help="redis (ratings read from the feedback topic, texts from the generator's log in Redis) or a JSONL file of pairs.",
    ),
    ratings_from: str = typer.Option("earliest", "--ratings-from", help="With --from redis: read the feedback topic from earliest or an ISO time."),
    topic: str = typer.Option("elmo.feedback", "--topic", help="With --from redis: the feedback topic to read."),
    steps: int = typer.Option(10, help="AdamW steps."),
    learning_rate: float = typer.Option(1e-4, "--lr", help="AdamW learning rate."),
    tuned_blocks: int = typer.Option(4, help="Top transformer blocks trained (the rest stay frozen)."),
    seed: int = typer.Option(13, help="Random seed: same pairs and seed, same version."),
    force: bool = typer.Option(False, "--force", help="Promote without the gate."),
    store: Path | None = STORE_OPTION,
) -> None:
    """Fine-tune the generator's rephrasing model on rephrased replies rated +1; register it, then the gate.

    A JSONL file has one `{"template", "rephrased", "reply_event_id"}` per line (replies already
    known to be well rated). Every 5th pair is held out for perplexity. Exit code 1 when rejected.
    """
    from elmo.models.rephraser import FineTuneConfig, RephraserModel, read_pairs, split_pairs, tune_and_gate, well_rated_pairs_from_log
    from elmo.reply_bandit import ReplyLearningSettings
    from elmo.runtime.settings import RuntimeSettings
    from services.generator.rephrase import judge
    from services.generator.service import load_brand

    if source == "redis":
        from elmo.tools.feedback_log import parse_start

        learning = ReplyLearningSettings()
        try:
            pairs, read = well_rated_pairs_from_log(
                _connections().kafka_bootstrap_servers, parse_start(ratings_from), topic, _connections().redis_url,
                learning.reply_index_ttl_s, learning.learning_key_prefix,
            )  # fmt: skip
        except (LookupError, TimeoutError, ValueError) as error:
            _fail(str(error))
        described: dict = {"source": "feedback log + redis", **read}
    else:
        pairs, described = read_pairs(Path(source)), {"source": str(source)}
    if not pairs:
        _fail("no well-rated rephrased replies to learn from")
    train, held_out = split_pairs(pairs)
    described["held_out_reply_event_ids"] = sorted(p.reply_event_id for p in held_out)
    config = FineTuneConfig(steps=steps, learning_rate=learning_rate, tuned_blocks=tuned_blocks, seed=seed)
    base = RephraserModel.packaged(RuntimeSettings().model_threads)
    gate = judge(base, load_brand(), held_out)
    outcome = _registry_call(lambda: tune_and_gate(_registry(store), gate, train, config, described, force=force))
    typer.echo(json.dumps(outcome.as_dict(), default=str))
    if outcome.decision is not None and not outcome.decision.promoted:
        typer.secho(f"rejected: {outcome.decision.reason}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@app.command("recommend")
def recommend(
    user: str = typer.Option(..., "--user", help="User id whose interactions (in Redis) shape the result."),
    text: str = typer.Option(..., "--text", help="What the customer said; entities (category, colour, size, product) are read from it."),
    k: int = typer.Option(3, "-k", help="How many items."),
    store: Path | None = STORE_OPTION,
) -> None:
    """Top-k items for a message, one JSON line each with score and reason (ALS if trained, else content + popularity)."""
    from elmo.brand.catalog import load_catalog
    from services.nlu.entities import extract_entities
    from services.recommender.commands import recommend_text
    from services.recommender.settings import RecommenderSettings

    overrides = {"recommender_top_k": k, **({"model_store": store} if store else {})}
    settings = RecommenderSettings(**overrides)
    for row in recommend_text(user, text, extract_entities(text, load_catalog()), settings):
        typer.echo(json.dumps(row, ensure_ascii=False))


@eval_app.command("nlu")
def eval_nlu(store: Path | None = STORE_OPTION) -> None:
    """Accuracy, macro-F1 and confusion matrix of the current intent model on the held-out split."""
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.models.intent_model import IntentModel, evaluate, read_examples
    from services.nlu.settings import NluSettings

    model = IntentModel.load(_store(store), SentenceEmbedder(), NluSettings().nlu_min_confidence)
    report = evaluate(model, [e for e in read_examples() if e.split == "test"])
    typer.echo(json.dumps({"version": model.version, **report.as_dict()}))


@eval_app.command("sentiment")
def eval_sentiment(store: Path | None = STORE_OPTION) -> None:
    """Accuracy of the current sentiment model and of VADER alone, per held-out set."""
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.tools.test_data import fetch_vader_ratings
    from elmo.models.sentiment_model import SentimentModel, evaluate, find_vader_directory, read_brand_examples, read_vader

    model = SentimentModel.load(_store(store), SentenceEmbedder())
    seed = int(_store(store).current("sentiment").meta.get("seed", 13))
    held_out = [e for e in read_vader(find_vader_directory(fetch_vader_ratings(_test_data_dir())), seed) + read_brand_examples() if e.split == "test"]
    typer.echo(json.dumps({"version": model.version, "held_out": evaluate(model, held_out)}))


@app.command("nlu")
def nlu(
    text: str | None = typer.Argument(None, help="One utterance."),
    file: Path | None = typer.Option(None, "--file", help='JSON lines with {"text": ...}; other fields are passed through.'),
    store: Path | None = STORE_OPTION,
) -> None:
    """Intent, confidence and entities per input, one JSON line each (no dialogue context)."""
    from elmo.brand.catalog import load_catalog
    from elmo.models.embeddings import SentenceEmbedder
    from services.nlu.entities import extract_entities
    from elmo.models.intent_model import IntentModel
    from services.nlu.settings import NluSettings

    rows = _text_rows(text, file)
    model = IntentModel.load(_store(store), SentenceEmbedder(), NluSettings().nlu_min_confidence)
    catalog = load_catalog()
    for row, prediction in zip(rows, model.predict([r["text"] for r in rows]), strict=True):
        entities = [e.model_dump(exclude_none=True) for e in extract_entities(row["text"], catalog)]
        typer.echo(json.dumps({**row, "intent": prediction.intent, "confidence": round(prediction.confidence, 4), "entities": entities}, ensure_ascii=False))


@app.command("sentiment")
def sentiment(
    text: str | None = typer.Argument(None, help="One utterance."),
    file: Path | None = typer.Option(None, "--file", help='JSON lines with {"text": ...}; other fields are passed through.'),
    store: Path | None = STORE_OPTION,
) -> None:
    """Sentiment label and score per input, one JSON line each."""
    from elmo.models.embeddings import SentenceEmbedder
    from elmo.models.sentiment_model import SentimentModel

    rows = _text_rows(text, file)
    model = SentimentModel.load(_store(store), SentenceEmbedder())
    for row, prediction in zip(rows, model.predict([r["text"] for r in rows]), strict=True):
        typer.echo(json.dumps({**row, "label": prediction.label, "score": prediction.score}, ensure_ascii=False))


def _text_rows(text: str | None, file: Path | None) -> list[dict]:
    if (text is None) == (file is None):
        _fail("give either TEXT or --file")
    if text is not None:
        return [{"text": text}]
    rows = []
    for number, line in enumerate(file.read_text().splitlines(), start=1):  # type: ignore[union-attr]
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            _fail(f"{file}:{number}: not JSON: {error}")
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            _fail(f'{file}:{number}: expected an object with a string "text"')
        rows.append(row)
    return rows


@app.command("asr")
def asr(
    files: list[Path] = typer.Argument(..., help="Audio files: .ogg/.opus, .mp3, .m4a, .wav, .webm, or .raw (16 kHz s16le)."),
    model: str | None = typer.Option(None, "--model", help="base or tiny.en (default: ELMO_ASR_MODEL, else base)."),
) -> None:
    """Transcribe audio files offline; one JSON line per file, exit code 1 if any failed."""
    from services.asr.commands import ModelChoice, transcribe

    transcribe(files=files, model=ModelChoice(model) if model else None)


@eval_app.command("asr")
def eval_asr(model: str | None = typer.Option(None, "--model", help="base or tiny.en (default: ELMO_ASR_MODEL, else base).")) -> None:
    """Word error rate on the LibriVox clips of the pocketsphinx test data (numbers normalised to words)."""
    from elmo.tools.test_data import fetch_pocketsphinx
    from services.asr.commands import transcribe_files
    from services.asr.settings import AsrSettings
    from services.asr.wer import corpus_wer, wer

    settings = AsrSettings(asr_model=model) if model else AsrSettings()
    clips = sorted((fetch_pocketsphinx(_test_data_dir()) / "test" / "data" / "librivox").glob("*.wav"))
    pairs, per_clip = [], []
    for clip, result in zip(clips, transcribe_files(clips, settings), strict=True):
        reference = clip.with_suffix(".txt").read_text().strip()
        pairs.append((reference, result.get("text", "")))
        per_clip.append({"file": clip.name, "wer": round(wer(reference, result.get("text", "")), 4), "text": result.get("text")})
    typer.echo(json.dumps({"model": settings.asr_model, "clips": len(clips), "wer": round(corpus_wer(pairs), 4), "per_clip": per_clip}))


@data_app.command("fetch")
def data_fetch() -> None:
    """Fetch the test and training data (pocketsphinx speech clips, VADER ratings) into .local/test-data."""
    from elmo.tools.test_data import fetch_pocketsphinx, fetch_vader_ratings

    for path in (fetch_pocketsphinx(_test_data_dir()), fetch_vader_ratings(_test_data_dir())):
        typer.echo(str(path))


@app.command("config")
def config() -> None:
    """Print every runtime setting (environment variable, default, meaning) as a Markdown table."""
    from elmo.runtime.settings import RuntimeSettings, settings_table

    typer.echo("| variable | default | meaning |\n|---|---|---|")
    for variable, default, description in settings_table(RuntimeSettings):
        typer.echo(f"| `{variable}` | `{default}` | {description} |")


@schema_app.command("export")
def schema_export(directory: Path = typer.Argument(Path("docs/schemas"), help="Where to write the files.")) -> None:
    """Write a JSON Schema per event type and the AsyncAPI document of the chain."""
    from elmo.tools.schema_docs import export

    for path in export(directory):
        typer.echo(str(path))


@deploy_app.command("render")
def deploy_render(
    check: bool = typer.Option(False, "--check", help="Write nothing; exit 1 when a generated file is missing or stale."),
) -> None:
    """Write the manifests that follow from the registry: KafkaTopics, service workloads, ScaledObjects, dashboard."""
    from elmo.local.stack_settings import find_repo_root
    from elmo.tools.k8s_manifests import stale, write

    deploy_dir = find_repo_root() / "deploy" / "k8s"
    if check:
        if outdated := stale(deploy_dir):
            _fail("stale generated manifests (run `elmo deploy render`): " + ", ".join(str(p) for p in outdated))
        typer.echo("generated manifests are up to date")
        return
    changed = write(deploy_dir)
    typer.echo(f"wrote {len(changed)} file(s)" + "".join(f"\n  {p}" for p in changed))



@brand_app.command("check")
def brand_check(
    directory: Path | None = typer.Option(None, "--dir", help="Folder with catalog.json, knowledge.json and brand.json (default: ELMO_BRAND_DIR, else the demo brand)."),
) -> None:
    """Validate the three brand files and their cross-references; print a summary; exit 2 on errors."""
    from elmo.brand.catalog import brand_dir
    from elmo.brand.check import check_brand

    report = check_brand(directory or brand_dir())
    for line in report.summary():
        typer.echo(line)
    for warning in report.warnings:
        typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
    for error in report.errors:
        typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    if not report.ok:
        typer.secho(f"{len(report.errors)} error(s) in the brand data", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)



# --- model registry ------------------------------------------------------------------------------

# The module of each model kind that supplies `held_out_evaluator()`, the promotion gate's judge.
MODEL_EVALUATORS = {
    "nlu-intent": "services.nlu.service",
    "sentiment": "services.sentiment.service",
    "generator-rephraser": "services.generator.service",
}


def _registry(store: Path | None, tolerance: float | None = None):  # noqa: ANN202 - ModelRegistry
    from elmo.models.registry import ModelRegistry
    from elmo.runtime.model_updates import KafkaAnnouncer, ModelUpdateSettings

    updates = ModelUpdateSettings()
    return ModelRegistry(_store(store), KafkaAnnouncer(updates.kafka_bootstrap_servers, updates.model_updates_topic), tolerance)


def _registry_call(action):  # noqa: ANN001, ANN202 - runs a registry action, turning its errors into messages
    from kafka.errors import KafkaError

    from elmo.models.registry import ConcurrentPromotion, NoModelVersion, NothingToRollBack

    try:
        return action()
    except (NoModelVersion, NothingToRollBack, ConcurrentPromotion) as error:
        _fail(str(error))
    except KafkaError as error:
        _fail(f"the store moved, but announcing it on the model-updates topic failed ({error!r}); "
              "`elmo models promote KIND <current version>` announces it again")


@models_app.command("list")
def models_list(
    kind: str | None = typer.Argument(None, help="Only this model kind (nlu-intent, sentiment, ...)."),
    store: Path | None = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="One JSON object per version instead of a table."),
) -> None:
    """Every version of every kind (or one kind), oldest first: status, current marker, metrics."""
    registry = _registry(store)
    kinds = [kind] if kind else registry.kinds()
    if not as_json:
        typer.echo(f"{'kind':14} {'version':17} {'status':12} {'created':20} metrics / reason")
    for each in kinds:
        for record in registry.records(each):
            if as_json:
                typer.echo(json.dumps(record.as_dict(), default=str))
                continue
            metrics = ", ".join(f"{k}={v:.4f}" for k, v in record.metrics.items() if isinstance(v, int | float))
            marker = "*" if record.current else " "
            line = f"{each:14} {marker}{record.version:16} {record.status.value:12} {record.created_at[:19]:20} {metrics}"
            typer.echo(line + (f"  [{record.status_reason}]" if record.status_reason else ""))


@models_app.command("show")
def models_show(
    kind: str = typer.Argument(..., help="Model kind."),
    version: str | None = typer.Argument(None, help="Version or a unique prefix of it (default: the current one)."),
    store: Path | None = STORE_OPTION,
) -> None:
    """One version's record (meta, status and its reason, gate evaluation) and the kind's promotion history."""
    registry = _registry(store)
    record = _registry_call(lambda: registry.record(kind, version))
    stack = registry.promoted_stack(kind)
    typer.echo(json.dumps(
        {**record.as_dict(), "rollback_target": stack[-2] if len(stack) > 1 else None, "history": registry.history(kind)},
        indent=2, default=str,
    ))


@models_app.command("promote")
def models_promote(
    kind: str = typer.Argument(..., help="Model kind."),
    version: str = typer.Argument(..., help="Version or a unique prefix of it."),
    force: bool = typer.Option(False, "--force", help="Skip the gate: promote without evaluating."),
    tolerance: float | None = typer.Option(None, help="Largest allowed drop of the primary metric (default: ELMO_PROMOTION_TOLERANCE)."),
    store: Path | None = STORE_OPTION,
) -> None:
    """Make VERSION current if it is no worse than the current one on the held-out set; announce it.

    Exit code 0 when promoted (or already current: announced again), 1 when rejected.
    """
    import importlib

    registry = _registry(store, tolerance)
    full = _registry_call(lambda: registry.resolve(kind, version))
    if force:
        decision = _registry_call(lambda: registry.promote(kind, full))
    else:
        if kind not in MODEL_EVALUATORS:
            _fail(f"no evaluator for {kind} (known: {', '.join(MODEL_EVALUATORS)}); --force promotes without one")
        evaluator = importlib.import_module(MODEL_EVALUATORS[kind]).held_out_evaluator()
        decision = _registry_call(lambda: registry.promote_if_better(kind, full, evaluator))
    typer.echo(json.dumps(decision.as_dict(), default=str))
    if not decision.promoted:
        typer.secho(f"rejected: {decision.reason}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1)


@models_app.command("rollback")
def models_rollback(kind: str = typer.Argument(..., help="Model kind."), store: Path | None = STORE_OPTION) -> None:
    """Back to the version promoted before the current one (which becomes rolled_back); announce it."""
    registry = _registry(store)
    decision = _registry_call(lambda: registry.rollback(kind))
    typer.echo(json.dumps(decision.as_dict(), default=str))


# --- learnt state --------------------------------------------------------------------------------

state_app = typer.Typer(help="What the feedback loop learnt, kept in Redis: a cache of elmo.replies and elmo.feedback.", no_args_is_help=True)
app.add_typer(state_app, name="state")


@state_app.command("rebuild")
def state_rebuild(
    since: str | None = typer.Option(None, "--since", help="An ISO time or a duration (7d, 12h, 30m); default: all the topics retain."),
    what: str | None = typer.Option(None, "--what", help="Comma-separated: interactions,bandit,replies,corrections (default: all)."),
    wipe: bool = typer.Option(False, "--wipe", help="Delete the parts' keys first (the exact rebuild; needed over a whole state)."),
    store: Path | None = STORE_OPTION,
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a summary."),
) -> None:
    """Rebuild histories, popularity, the reply index, the bandit's counts and the corrections from the topics."""
    from datetime import UTC, datetime

    from elmo.tools.state_rebuild import StateIsWhole, StateRebuildSettings, parse_parts, parse_since, rebuild

    settings = StateRebuildSettings()
    if store is not None:
        settings = settings.model_copy(update={"model_store": store})
    try:
        report = rebuild(settings, parse_since(since, datetime.now(UTC)), parse_parts(what), wipe=wipe)
    except (StateIsWhole, ValueError, LookupError, TimeoutError) as error:
        _fail(str(error))
    typer.echo(json.dumps(report.as_dict(), default=str) if as_json else report.summary())


# --- dead letters --------------------------------------------------------------------------------

dlq_app = typer.Typer(
    help="Dead letters of a service (topic elmo.dlq.SERVICE): list them, show one, replay the originals.", no_args_is_help=True
)
app.add_typer(dlq_app, name="dlq")
DLQ_SERVICE = typer.Argument(..., help="The service whose dead letters to read: intake, asr, nlu, sentiment, ...")
DLQ_REASON = typer.Option(None, "--reason", help="Only letters of this reason (malformed, invalid, too_large, ...).")
DLQ_TIMEOUT = typer.Option(30.0, "--timeout", help="Seconds to read the dead-letter topic to its end.")


def _dead_letters(service: str, timeout: float):  # noqa: ANN202 - list[LetterRecord]
    from elmo.tools.dead_letter_admin import DeadLetterError, read_dead_letters

    try:
        return read_dead_letters(_connections().kafka_bootstrap_servers, service, timeout)
    except (DeadLetterError, TimeoutError) as error:
        _fail(str(error))


@dlq_app.command("list")
def dlq_list(
    service: str = DLQ_SERVICE,
    reason: str | None = DLQ_REASON,
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the newest N (after --reason)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per letter (headers and body) instead of a table."),
    timeout: float = DLQ_TIMEOUT,
) -> None:
    """One line per dead letter, oldest first: where it is, when, why, where the original was, the error; then counts by reason."""
    from elmo.tools.dead_letter_admin import DeadLetterError, as_dict, check_reason, list_header, list_line, select, summary_line

    try:
        check_reason(reason)
    except DeadLetterError as error:
        _fail(str(error))
    letters = select(_dead_letters(service, timeout), every=True, reason=reason, newest=limit)
    if not as_json:
        typer.echo(list_header())
    for letter in letters:
        typer.echo(json.dumps(as_dict(letter), ensure_ascii=False) if as_json else list_line(letter))
    typer.echo(summary_line(letters), err=as_json)


@dlq_app.command("show")
def dlq_show(
    service: str = DLQ_SERVICE,
    letter: str | None = typer.Argument(None, help="PARTITION:OFFSET, OFFSET, or an event id (the letter's or the original's); default: the newest."),
    as_json: bool = typer.Option(False, "--json", help="The letter as one JSON object."),
    timeout: float = DLQ_TIMEOUT,
) -> None:
    """One dead letter in full: the failure, its headers and the original value (decoded, control characters escaped)."""
    from elmo.tools.dead_letter_admin import DeadLetterError, as_dict, find_one, select, show_lines

    records = _dead_letters(service, timeout)
    try:
        found = find_one(records, letter) if letter is not None else select(records, every=True, newest=1)[0]
    except DeadLetterError as error:
        _fail(str(error))
    except IndexError:
        _fail(f"no dead letters for {service}")
    typer.echo(json.dumps(as_dict(found), indent=2, ensure_ascii=False) if as_json else "\n".join(show_lines(found)))


@dlq_app.command("replay")
def dlq_replay(
    service: str = DLQ_SERVICE,
    offsets: list[str] = typer.Option([], "--offset", help="PARTITION:OFFSET (or OFFSET, or an event id) of a letter; repeatable."),
    every: bool = typer.Option(False, "--all", help="Every letter of the topic (with --reason: every letter of that reason)."),
    reason: str | None = DLQ_REASON,
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be sent; send nothing."),
    timeout: float = DLQ_TIMEOUT,
) -> None:
    """Publish the original value of each chosen letter, byte for byte, with its key, to its original topic.

    Replaying is safe: every service remembers the event ids it handled (in Redis, for
    ELMO_IDEMPOTENCY_TTL_S), so an original that was already handled makes no second output, and
    replaying a letter twice does no harm. A letter whose value was truncated to fit the dead-letter
    topic is refused (skipped and counted): only its source has the whole value. Each replayed
    record carries the header elmo.dlq.replayed_from (dead-letter topic/partition:offset).

    The service also remembers the ids of events it dead-lettered after decoding them
    (processing_failed, rejected): it skips their replay until ELMO_IDEMPOTENCY_TTL_S has passed.
    """
    from kafka.errors import KafkaError

    from elmo.tools.dead_letter_admin import DeadLetterError, check_reason, plan_replay, publish_replays, safe_text, select

    if bool(offsets) == every:
        _fail("give --offset (one or more) or --all")
    try:
        check_reason(reason)
        chosen = select(_dead_letters(service, timeout), offsets, every=every, reason=reason)
    except DeadLetterError as error:
        _fail(str(error))
    replays, skipped = plan_replay(chosen)
    for item in skipped:
        typer.secho(f"skipped {item.source.position}: {item.why}", fg=typer.colors.YELLOW, err=True)
    verb = "would replay" if dry_run else "replayed"
    if not dry_run:
        try:
            publish_replays(_connections().kafka_bootstrap_servers, replays)
        except KafkaError as error:
            _fail(f"publishing failed ({error!r}); replaying again is safe")
    for item in replays:
        key = safe_text(item.key.decode("utf-8", "replace")) if item.key is not None else "-"
        typer.echo(f"{verb} {item.source.position} -> {item.topic} (key {key}, {len(item.value)} bytes)")
    typer.echo(f"{verb} {len(replays)}, skipped {len(skipped)} of {len(chosen)} selected")


if __name__ == "__main__":
    app()
