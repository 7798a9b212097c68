"""Each recommendation says why in words, carries its price and a signed, deterministic tracking link."""

import numpy as np

from elmo.interactions import UserHistory
from elmo.link_settings import LinkSettings
from elmo.tracking_links import read_token
from services.recommender.core import RecommendationRequest, Recommender, recommend_batch, BatchInputs, tracking_id_for
from services.recommender.item_index import ItemIndex
from tests.unit.recommender.conftest import entity, scored


def recommend(recommender, event, history=UserHistory(), query=None, popularity=None):
    return recommender.recommend(RecommendationRequest(event, history, popularity, query))


def test_requested_attributes_are_named_in_the_reason(content_only):
    event = scored("a blue top in size L?", entities=[entity("category", "apparel"), entity("color", "blue"), entity("size", "L")])
    reasons = {r.item_id: r.reason for r in recommend(content_only, event)}
    assert reasons == {"hoodie-trail": "matches 'blue, size L'", "tee-basic": "matches 'blue, size L'"}


def test_the_product_in_focus_and_what_fits_it_say_so(content_only):
    nova, *others = recommend(content_only, scored(intent="purchase", product_in_focus="phone-nova"))
    assert nova.reason == "the Nova Phone you asked about"
    assert {r.reason for r in others} == {"fits the Nova Phone"}
    black = recommend(content_only, scored(intent="purchase", entities=[entity("color", "black")], product_in_focus="phone-nova"))
    assert black[0].reason == "matches 'black'"


def test_popularity_speaks_when_it_decides(content_only):
    popularity = content_only.popularity_vector({"trip-lisbon": 40.0, "shoe-city": 12.0, "tee-basic": 3.0})
    found = recommend(content_only, scored(), popularity=popularity)
    assert [r.item_id for r in found] == ["trip-lisbon", "shoe-city", "tee-basic"]
    assert {r.reason for r in found} == {"popular this week"}


def test_text_similarity_speaks_when_it_decides(content_only, query):
    found = recommend(content_only, scored("shoes for running on mountain trails"), query=query("shoes for running on mountain trails"))
    assert found[0].item_id == "shoe-trail-runner"
    assert found[0].reason == "similar to what you asked for"


def test_co_purchases_are_explained_by_the_item_bought(catalog, vectors, als):
    recommender = Recommender(ItemIndex(catalog), vectors, als, top_k=3)
    bought = UserHistory(weights={"phone-nova": 15.0}, purchases={"phone-nova": 1_700_000_000.0})
    found = recommend(recommender, scored(entities=[entity("category", "phone accessories")]), bought)
    assert "customers who bought Nova Phone also bought this" in {r.reason for r in found}


def test_promoted_items_lead_when_the_customer_asks_about_promotions(content_only):
    found = recommend(content_only, scored("any deals at the moment?", intent="promotion_inquiry"))
    assert found[0].item_id == "hoodie-trail" and found[0].reason == "on promotion"


def test_tracking_ids_are_a_function_of_the_input_event_and_the_item(content_only):
    event = scored(event_id="evt-1", intent="purchase", product_in_focus="phone-nova")
    first, again = recommend(content_only, event), recommend(content_only, event.model_copy())
    assert [r.tracking_id for r in first] == [r.tracking_id for r in again]
    assert first[0].tracking_id == tracking_id_for("evt-1", "phone-nova")
    other = recommend(content_only, scored(event_id="evt-2", intent="purchase", product_in_focus="phone-nova"))
    assert not {r.tracking_id for r in first} & {r.tracking_id for r in other}
    assert len({r.tracking_id for r in first}) == len(first)


def test_urls_are_signed_tracking_links_to_the_product_page(catalog, vectors):
    links = LinkSettings(shop_url="https://shop.example", tracking_base_url="https://t.example", tracking_secret="s3cret")
    recommender = Recommender(ItemIndex(catalog), vectors, None, links=links, top_k=3)
    event = scored(user="u-42", intent="purchase", product_in_focus="phone-nova")
    for recommendation in recommend(recommender, event):
        assert recommendation.url.startswith("https://t.example/r/")
        link = read_token(recommendation.url.rsplit("/r/", 1)[1], "s3cret")
        assert link.item_id == recommendation.item_id and link.tracking_id == recommendation.tracking_id
        assert len(recommendation.url) < 200  # short enough for a chat message
        assert (link.user_id, link.conversation_id, link.channel) == ("u-42", "c-u-42", "web")
        assert recommendation.price == catalog.by_id(recommendation.item_id).price


def test_a_batch_derives_recommended_events_with_the_model_version(content_only):
    events = [scored(intent="purchase", product_in_focus="phone-nova"), scored(intent="complaint", sentiment="negative")]
    outputs = recommend_batch(events, content_only, BatchInputs({}, None, [None, None]))
    assert [o.event_type for o in outputs] == ["recommended", "recommended"]
    assert outputs[0].recommendations and outputs[1].recommendations == []
    assert {o.recommender_model_version for o in outputs} == {"content-only"}
    assert outputs[0].parent_event_id == events[0].event_id and outputs[0].intent.name == "purchase"
    assert outputs[0].sentiment == events[0].sentiment


def test_scores_are_ordered_with_the_product_in_focus_on_top(content_only):
    scores = [r.score for r in recommend(content_only, scored(intent="purchase", product_in_focus="phone-nova"))]
    assert scores == sorted(scores, reverse=True) and np.isfinite(scores).all()
