from datetime import date

from typer.testing import CliRunner

from elmo.brand.catalog import DEFAULT_BRAND_DIR
from elmo.brand.check import check_brand
from elmo.cli import app
from tests.unit.brand.conftest import edit_json

runner = CliRunner()


def item(data: dict, item_id: str) -> dict:
    return next(i for i in data["items"] if i["id"] == item_id)


def test_the_demo_brand_passes_and_is_summarised():
    result = runner.invoke(app, ["brand", "check", "--dir", str(DEFAULT_BRAND_DIR)])
    assert result.exit_code == 0, result.output
    assert "brand: Northwind Market" in result.stdout
    for line in ("phones", "phone accessories", "apparel", "shoes", "travel packages"):
        assert f"  {line} " in result.stdout
    assert "stores: Berlin, Hamburg, Munich, Vienna" in result.stdout
    assert "error" not in result.output


def test_without_dir_it_checks_elmo_brand_dir(brand_copy, monkeypatch):
    monkeypatch.setenv("ELMO_BRAND_DIR", str(brand_copy))
    result = runner.invoke(app, ["brand", "check"])
    assert result.exit_code == 0, result.output
    assert f"brand data in {brand_copy}" in result.stdout


def test_an_unknown_promotion_fails_with_the_item_named(brand_copy):
    edit_json(brand_copy / "catalog.json", lambda data: item(data, "phone-pixel-9").update(promotion="promo-nope"))
    result = runner.invoke(app, ["brand", "check", "--dir", str(brand_copy)])
    assert result.exit_code == 2
    assert "phone-pixel-9: promotion 'promo-nope' is no 'promotions' entry of knowledge.json" in result.stderr


def test_a_knowledge_entry_breaking_the_grounding_rule_fails(brand_copy):
    def break_entry(data):
        data["entries"][0]["answer"] = "Delivery takes 3 days and costs {price}."

    edit_json(brand_copy / "knowledge.json", break_entry)
    result = runner.invoke(app, ["brand", "check", "--dir", str(brand_copy)])
    assert result.exit_code == 2
    assert "entry 0 (shipping-standard): answer uses {price} but facts has no such key" in result.stderr


def test_cross_references_of_the_profile_and_banned_phrases_fail(brand_copy):
    edit_json(brand_copy / "brand.json", lambda data: data["handoff"].update(hours="contact-nobody"))
    cheapest = "The cheapest iPhone around."
    edit_json(brand_copy / "catalog.json", lambda data: item(data, "phone-iphone-16").update(description=cheapest))
    edit_json(brand_copy / "catalog.json", lambda data: item(data, "case-pixel-9").update(compatible_with=["phone-nope"]))
    result = runner.invoke(app, ["brand", "check", "--dir", str(brand_copy)])
    assert result.exit_code == 2
    assert "brand.json: handoff.hours 'contact-nobody' is no entry of knowledge.json" in result.stderr
    assert "phone-iphone-16: says the banned phrase 'cheapest'" in result.stderr
    assert "case-pixel-9: compatible_with 'phone-nope' is no other item of the catalog" in result.stderr
    assert "3 error(s) in the brand data" in result.stderr


def test_missing_and_malformed_files_fail(brand_copy):
    (brand_copy / "brand.json").unlink()
    (brand_copy / "knowledge.json").write_text("{not json")
    result = runner.invoke(app, ["brand", "check", "--dir", str(brand_copy)])
    assert result.exit_code == 2
    assert f"{brand_copy / 'brand.json'}: no such file" in result.stderr
    assert f"{brand_copy / 'knowledge.json'}: not JSON" in result.stderr
    assert "catalog: " in result.stdout  # what could be read is still summarised
    assert runner.invoke(app, ["brand", "check", "--dir", str(brand_copy / "nope")]).exit_code == 2


def test_an_ended_promotion_is_a_warning_not_an_error():
    report = check_brand(DEFAULT_BRAND_DIR, today=date(2030, 1, 1))
    assert report.ok
    assert any("promotion promo-tee-bundle ended on 2027-01-31" in w for w in report.warnings)
    assert check_brand(DEFAULT_BRAND_DIR, today=date(2026, 11, 1)).warnings == []
