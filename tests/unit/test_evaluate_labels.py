"""The labels file of `callmood evaluate`: columns by name, Chinese emotion names, mm:ss,
and every bad row with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from plugin.flow.evaluate.labels import MAX_ROWS, LabelsError, parse_emotion, parse_time, read_labels


def write(tmp_path: Path, text: str, name: str = "labels.csv", bom: bool = False) -> Path:
    p = tmp_path / name
    p.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return p


@pytest.mark.parametrize("given,want", [
    ("angry", "angry"), ("Angry ", "angry"), ("生气", "angry"), ("厌恶", "disgusted"), ("恐惧", "fearful"),
    ("开心", "happy"), ("中立", "neutral"), ("其他", "other"), ("难过", "sad"), ("吃惊", "surprised"),
    ("<unk>", "unknown"), ("unknown", "unknown"), ("生气/angry", "angry"), ("难过/sad", "sad"),
    ("生气/sad", None), ("furious", None), ("", None), ("a/b/c", None),
    # normalize_label reads an empty part as "unknown": a bare slash is no emotion at all
    ("/", None), (" / ", None), ("生气/", None), ("/angry", None), ("/unknown", None)])
def test_emotion_names(given, want):
    assert parse_emotion(given) == want


@pytest.mark.parametrize("given,want", [
    ("12.5", 12.5), ("0", 0.0), ("0:12.5", 12.5), ("01:02", 62.0), ("75:00", 4500.0), ("1:02:03.5", 3723.5)])
def test_times(given, want):
    assert parse_time(given) == (want, "")


@pytest.mark.parametrize("given", ["1:60", "1:61:00", "-3", "nan", "inf", "1m", "1:2:3:4", ""])
def test_bad_times(given):
    assert parse_time(given)[1]


def test_a_labels_file_in_any_column_order_with_a_bom(tmp_path):
    (tmp_path / "calls").mkdir()
    p = write(tmp_path, "Emotion,role,file,call_id,end,start,channels,scenario,note\n"
                        'neutral,customer,calls/a.wav,,0:18.5,0:12,"0=agent,1=customer",finance_complaint,loud\n'
                        "\n"
                        "难过,,,1042,,,,,\n", bom=True)
    a, b = read_labels(p)
    assert (a.line, a.emotion, a.file, a.file_text, a.call_id, a.start, a.end, a.role, a.channels, a.scenario) == \
        (2, "neutral", (tmp_path / "calls" / "a.wav").resolve(), "calls/a.wav", None, 12.0, 18.5, "customer",
         {0: "agent", 1: "customer"}, "finance_complaint")
    assert (b.line, b.emotion, b.call_id, b.file, b.start, b.end, b.role, b.whole) == \
        (4, "sad", 1042, None, None, None, None, True)
    assert a.unit == f"file:{a.file}" and b.unit == "call:1042"


def test_every_bad_row_is_reported_with_its_line(tmp_path):
    p = write(tmp_path, "file,call_id,start,end,role,emotion,channels,scenario\n"
                        "a.wav,,,,,furious,,\n"             # 2: not an emotion
                        "a.wav,7,,,,angry,,\n"              # 3: both file and call
                        ",,,,,angry,,\n"                    # 4: neither
                        "a.wav,,1:70,2:00,,angry,,\n"       # 5: bad time
                        "a.wav,,5,3,,angry,,\n"             # 6: end before start
                        "a.wav,,5,,,angry,,\n"              # 7: start without end
                        "a.wav,,,,boss,angry,,\n"           # 8: bad role
                        "a.wav,,,,,angry,0=boss,\n"         # 9: bad channels
                        ",x12,,,,angry,,\n"                 # 10: bad call id
                        ",12,,,,angry,0=agent,\n"           # 11: channels on a stored call
                        "a.wav,,,,,angry\n"                 # 12: too few cells
                        "a.wav,,,,,,,\n")                   # 13: no emotion
    with pytest.raises(LabelsError) as err:
        read_labels(p)
    lines = [x.split(":")[1] for x in err.value.problems]
    assert lines == [str(n) for n in range(2, 14)], err.value.problems
    said = dict(x.split(": ", 1) for x in err.value.problems)
    assert said["labels.csv:2"].startswith("emotion: 'furious' is not an emotion (known: angry, disgusted")
    assert said["labels.csv:3"] == said["labels.csv:4"] == "give either file or call_id (one of the two)"
    assert said["labels.csv:5"] == "start: '1:70': minutes and seconds must be below 60"
    assert said["labels.csv:6"] == "end (3) must be after start (5)"
    assert said["labels.csv:7"] == "give both start and end, or neither (the whole call)"
    assert said["labels.csv:8"] == "role: 'boss' must be one of customer, agent, mixed, or empty"
    assert said["labels.csv:9"].startswith("channels: role 'boss'")
    assert said["labels.csv:10"].startswith("call_id: 'x12' must be a call's number")
    assert said["labels.csv:11"].startswith("channels: only for a file")
    assert said["labels.csv:12"] == "has 6 cells; the header has 8"
    assert said["labels.csv:13"] == "emotion: is required"


def test_only_the_first_problems_are_listed_then_a_count(tmp_path):
    p = write(tmp_path, "file,emotion\n" + "a.wav,furious\n" * 25)
    with pytest.raises(LabelsError) as err:
        read_labels(p)
    shown = err.value.lines()
    assert len(err.value.problems) == 25 and len(shown) == 21
    assert shown[0].startswith("labels.csv:2: emotion:") and shown[-1] == "... and 5 more problem(s)"


@pytest.mark.parametrize("text,said", [
    ("file,emotion,mood\n", "labels.csv:1: column 'mood': unknown column (known: file, call_id, start"),
    ("file,role\n", "labels.csv:1: no 'emotion' column"),
    ("start,end,emotion\n", "labels.csv:1: no 'file' or 'call_id' column"),
    ("file,emotion,start\n", "labels.csv:1: give both 'start' and 'end' columns, or neither"),
    ("file,emotion,file\n", "labels.csv:1: column 'file' appears twice"),
    ("", "labels.csv:1: no header row"),
    ("file,emotion\n\n", "labels.csv: no labels"),
])
def test_file_level_problems_in_one_line(tmp_path, text, said):
    with pytest.raises(LabelsError) as err:
        read_labels(write(tmp_path, text))
    [line] = err.value.problems
    assert line.startswith(said), line


def test_limits_and_encodings(tmp_path, monkeypatch):
    bad = tmp_path / "labels.csv"
    bad.write_bytes(b"file,emotion\n\xff")
    with pytest.raises(LabelsError, match=r"^labels.csv: not UTF-8 \(byte 13\); save it as CSV UTF-8$"):
        read_labels(bad)
    with pytest.raises(LabelsError, match="cannot read"):
        read_labels(tmp_path / "missing.csv")
    from plugin.flow.evaluate import labels
    monkeypatch.setattr(labels, "MAX_ROWS", 3)
    with pytest.raises(LabelsError, match=r"^labels.csv: more than 3 rows; split it into several files$"):
        read_labels(write(tmp_path, "file,emotion\n" + "a.wav,angry\n" * 4))
    monkeypatch.setattr(labels, "MAX_BYTES", 20)
    with pytest.raises(LabelsError, match=r"^labels.csv: larger than .* MB; split it into several files$"):
        read_labels(write(tmp_path, "file,emotion\n" + "a.wav,angry\n"))
    assert MAX_ROWS == 100_000


def test_a_bare_slash_is_refused_with_its_line(tmp_path):
    with pytest.raises(LabelsError) as err:
        read_labels(write(tmp_path, "file,emotion\na.wav,/\na.wav, / \na.wav,angry\n"))
    assert [x.split(": ", 1)[0] for x in err.value.problems] == ["labels.csv:2", "labels.csv:3"]
    assert err.value.problems[0].startswith("labels.csv:2: emotion: '/' is not an emotion (known: angry")


def test_empty_columns_as_excel_writes_them_are_ignored(tmp_path):
    # Excel saves the empty columns right of the table ("file,emotion,,"); an empty one between
    # named columns is just as harmless while nothing is written under it.
    p = write(tmp_path, "file,emotion,,\ncalls/a.wav,angry,,\n,,,\ncalls/b.wav,sad,,\n", bom=True)
    assert [(lab.file_text, lab.emotion) for lab in read_labels(p)] == [("calls/a.wav", "angry"),
                                                                        ("calls/b.wav", "sad")]
    p = write(tmp_path, "file, ,emotion\ncalls/a.wav,,angry\n")
    assert [lab.emotion for lab in read_labels(p)] == ["angry"]


def test_an_unnamed_column_that_holds_values_is_refused_with_its_number(tmp_path):
    p = write(tmp_path, "file,emotion,,\ncalls/a.wav,angry,,\ncalls/b.wav,sad,,loud\ncalls/c.wav,sad,x,y\n")
    with pytest.raises(LabelsError) as err:
        read_labels(p)
    assert err.value.problems == [
        "labels.csv:1: column 4 has no name, but line 3 has a value in it; name it (file, call_id, start, end, "
        "role, emotion, channels, scenario, note) or empty it",
        "labels.csv:1: column 3 has no name, but line 4 has a value in it; name it (file, call_id, start, end, "
        "role, emotion, channels, scenario, note) or empty it"]
    with pytest.raises(LabelsError, match=r"^labels.csv:1: no header row"):
        read_labels(write(tmp_path, ",,\na.wav,angry,\n"))
