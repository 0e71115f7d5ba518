import projections


def test_the_projections_surface_is_pinned() -> None:
    assert set(projections.__all__) >= {
        "InlineRunner",
        "ProjectionActor",
        "RecordsView",
        "WorkflowsView",
        "StreamsView",
        "declare_index",
        "rebuild",
        "replay",
        "reset",
        "retry_parked",
        "status",
        "subscribe",
        "subscribe_async",
    }
