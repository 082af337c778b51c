"""Customer identity, the parts without a database or a network: phone numbers in E.164,
the identity config, reading the CRM's answer, and what a log line keeps of a number."""

import pytest

from plugin import config
from plugin.core import scrub
from plugin.core.phones import e164
from plugin.flow.lookups import LookupFailed, RestLookup, customer_id, pick


@pytest.mark.parametrize("written, region, expected", [
    ("+8613800138000", "CN", "+8613800138000"),
    ("+86 138 0013 8000", "CN", "+8613800138000"),
    ("+86-138-0013-8000", "US", "+8613800138000"),  # a country code wins over the region
    ("13800138000", "CN", "+8613800138000"),  # a mobile number without its country code
    ("010-12345678", "CN", "+861012345678"),  # a Beijing landline with its trunk prefix
    ("2025550123", "US", "+12025550123"),  # the region decides a number without a country
    ("2025550123", "CN", "+862025550123"),
    ("(202) 555-0123", "US", "+12025550123"),
    ("008613800138000", "CN", "+8613800138000"),  # 00: the international prefix, like +
    ("00 44 20 7183 8750", "US", "+442071838750"),
    ("sip:+8613800138000@pbx.example.com", "CN", "+8613800138000"),
    ("sip:13800138000@10.0.0.5;transport=udp", "CN", "+8613800138000"),
    ("SIP:+14155550123@sip.twilio.com", "CN", "+14155550123"),
    ("tel:+14155550123", "CN", "+14155550123"),
    ("  +8613800138000  ", "CN", "+8613800138000"),
])
def test_numbers_as_contact_centers_write_them_become_e164(written, region, expected):
    assert e164(written, region) == expected


@pytest.mark.parametrize("written", [
    None, "", "   ", "anonymous", "Anonymous", "restricted", "unknown", "sip:anonymous@pbx",
    "sip:agent-7@pbx.example.com", "client:agent7",  # a softphone user, not a number
    "12", "+1", "138abc00138000", "+86 138 0013 8000 ext 12", "1" * 40,
    "+86\n13800138000", "+8613800138000<script>", "1380013800０",  # a full-width digit
])
def test_what_is_not_a_phone_number_is_none_not_an_error(written):
    assert e164(written, "CN") is None


def test_default_region_is_china_and_checked_against_phonenumbers():
    assert config.from_dict({}).identity.default_region == "CN"
    assert config.from_dict({"identity": {"default_region": "us"}}).identity.default_region == "US"
    for bad in ("XX", "China", "001", ""):
        with pytest.raises(config.ConfigError, match="identity.default_region: .* not a region"):
            config.from_dict({"identity": {"default_region": bad}})


def test_identity_defaults_no_lookup_a_day_for_hits_an_hour_for_misses():
    ident = config.from_dict({}).identity
    assert (ident.lookup, ident.cache_s, ident.miss_cache_s) == (None, 86400, 3600)


def rest(**lookup):
    return config.from_dict({"identity": {"lookup": {"type": "rest", **lookup}}}).identity.lookup


@pytest.mark.parametrize("url, problem", [
    ("https://crm.example.com/api/customers", "must contain {phone}"),
    ("https://{phone}.crm.example.com/", "must start with http"),
    ("https://crm.example.com:{phone}/", "host and port must be written out"),
    ("https://crm.example.com{phone}", "host and port must be written out"),
    ("ftp://crm.example.com/{phone}", "must start with http"),
    ("https://user:pass@crm.example.com/{phone}", "no credentials"),
    ("/api/customers/{phone}", "must start with http"),
])
def test_the_lookup_url_must_write_out_where_it_goes(url, problem):
    with pytest.raises(config.ConfigError, match=r"identity\.lookup\.url: .*" + problem):
        rest(url=url)


def test_lookup_config_errors_name_the_key_as_the_file_does():
    unknown = r"identity\.lookup\.type: unknown lookup type 'ldap' \(known: rest, csv\)"
    with pytest.raises(config.ConfigError, match=unknown):
        config.from_dict({"identity": {"lookup": {"type": "ldap"}}})
    with pytest.raises(config.ConfigError, match=r"identity\.lookup\.type: is required"):
        config.from_dict({"identity": {"lookup": {"url": "https://crm/{phone}"}}})
    with pytest.raises(config.ConfigError, match=r"identity\.lookup\.path: is required"):
        config.from_dict({"identity": {"lookup": {"type": "csv"}}})
    with pytest.raises(config.ConfigError, match=r"identity\.lookup\.urll: unknown key"):
        rest(url="https://crm/{phone}", urll="x")
    with pytest.raises(config.ConfigError, match=r"identity\.lookup\.id_field: must be a dotted path"):
        rest(url="https://crm/{phone}", id_field="data..id")
    with pytest.raises(config.ConfigError, match=r"identity\.lookup\.headers: .*line feed") as err:
        rest(url="https://crm/{phone}", headers={"Authorization": "Bearer s3cret\nX-Evil: 1"})
    assert "s3cret" not in str(err.value)  # a header's value is a token: never echoed
    with pytest.raises(config.ConfigError, match=r"sinks\.a\.type: unknown sink type"):  # sinks unchanged
        config.from_dict({"sinks": {"a": {"type": "ldap"}}})


def test_the_phone_is_percent_encoded_into_the_template():
    lookup = RestLookup(rest(url="https://crm.example.com/api/customers/{phone}?fields=id"))
    assert lookup.url("+8613800138000") == "https://crm.example.com/api/customers/%2B8613800138000?fields=id"
    # Whatever reaches it stays one path segment: it cannot climb or change host.
    assert lookup.url("../@evil/#") == "https://crm.example.com/api/customers/..%2F%40evil%2F%23?fields=id"
    query = RestLookup(rest(url="http://127.0.0.1:8080/search?q={phone}&limit=1"))
    assert query.url("+14155550123") == "http://127.0.0.1:8080/search?q=%2B14155550123&limit=1"


@pytest.mark.parametrize("answer, path, expected", [
    ({"id": "cust-7"}, "id", "cust-7"),
    ({"data": [{"id": "cust-7"}, {"id": "cust-8"}]}, "data.0.id", "cust-7"),
    ({"data": [{"id": 42}]}, "data.0.id", 42),
    ({"result": {"customer": {"id": "c"}}}, "result.customer.id", "c"),
    ({"data": []}, "data.0.id", None),  # no results: no such customer
    ({"data": {}}, "data.0.id", None),
    ({"data": None}, "data.0.id", None),
    ({}, "id", None),
    ([], "0.id", None),
    (None, "id", None),
    ({"data": [{"id": None}]}, "data.0.id", None),
    ({"data": [{"id": "a"}]}, "data.1.id", None),  # fewer results than the path asks for
])
def test_pick_reads_the_dotted_path_and_an_empty_result_is_no_customer(answer, path, expected):
    assert pick(answer, path) == expected


@pytest.mark.parametrize("answer, path, problem", [
    ({"customers": [{"id": "x"}]}, "data.0.id", "the answer has no 'data'"),
    ({"data": [{"name": "x"}]}, "data.0.id", "data.0 has no 'id'"),
    ({"data": {"id": "x"}}, "data.first.id", "data has no 'first'"),  # a dict: "first" is a key
    ({"data": [{"id": "x"}]}, "data.first", "data is a list"),
    ({"data": "cust-7"}, "data.id", "data is str"),
])
def test_pick_refuses_an_answer_of_another_shape(answer, path, problem):
    with pytest.raises(LookupFailed, match=problem):
        pick(answer, path)


def test_customer_id_accepts_ids_and_refuses_what_could_inject():
    assert customer_id("cust-7", "id") == "cust-7"
    assert customer_id(1234567, "id") == "1234567"
    assert customer_id("", "id") is None and customer_id(None, "id") is None
    for hostile in ("../../admin", "cust\r\nSet-Cookie: x=1", "[click](https://evil.example)", "<@all>",
                    "a" * 200, "..", "id with space", "x\x00"):
        with pytest.raises(LookupFailed, match="is not an id") as err:
            customer_id(hostile, "the answer's id")
        assert hostile not in str(err.value)  # never quoted: it may be the attack
    for wrong in (True, 1.5, {"$ne": 1}, ["a"]):
        with pytest.raises(LookupFailed, match="not an id"):
            customer_id(wrong, "the answer's id")


def test_a_number_in_a_log_line_is_masked_also_percent_encoded():
    line = ("ConnectionError: HTTPConnectionPool(host='crm', port=80): Max retries exceeded with url: "
            "/api/customers/%2B8613800138000?phone=+8613800138000")
    masked = scrub.phones(line)
    assert "13800138000" not in masked and "0138000" not in masked
    assert "%2B86138****8000" in masked and "+86138****8000" in masked
    assert scrub.phone("+8613800138000") == "+86138****8000"
