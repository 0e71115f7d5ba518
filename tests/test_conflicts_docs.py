import doctest
import re
from pathlib import Path

GUIDE = Path(__file__).resolve().parent.parent / "docs" / "replication.md"


def pycon_blocks(text: str) -> list[str]:
    return re.findall(r"^```pycon\n(.*?)^```$", text, flags=re.DOTALL | re.MULTILINE)


def test_the_replication_guide_examples_run_as_written() -> None:
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    globs: dict[str, object] = {}
    blocks = pycon_blocks(GUIDE.read_text(encoding="utf-8"))

    for number, block in enumerate(blocks):
        test = parser.get_doctest(block, globs, f"block {number}", str(GUIDE), 0)
        runner.run(test)

    assert len(blocks) == 4
    assert runner.summarize(verbose=False).failed == 0
