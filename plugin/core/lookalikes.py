"""Full-width look-alikes of the characters WeCom markdown acts on.

WeCom markdown has no escape character, so a value put into a message (a queue name, a
customer id, a rule's summary) has ``# [ ] < > * ` &`` replaced by characters that read the
same and start nothing (connectors/sinks/wecom_robot.md). Whoever searches a stored message
for a value (`callmood forget`, plugin/store/forget.py) looks for this form too."""

MARKDOWN = str.maketrans({"<": "＜", ">": "＞", "[": "［", "]": "］", "#": "＃", "*": "＊",
                          "`": "｀", "&": "＆"})


def markdown_safe(text: str) -> str:
    return text.translate(MARKDOWN)
