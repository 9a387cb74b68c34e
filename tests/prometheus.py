"""Reading GET /metrics as Prometheus does: with the client library's own parser."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

TEXT_FORMAT = "text/plain; version=0.0.4"


class Scrape:
    """One scrape's samples, looked up by name and exact labels."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.samples: list[Sample] = []
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            self.samples.extend(family.samples)

    def find(self, name: str, **labels: str) -> float | None:
        for sample in self.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
        return None

    def value(self, name: str, **labels: str) -> float:
        found = self.find(name, **labels)
        if found is None:
            named = [
                (sample.labels, sample.value) for sample in self.samples if sample.name == name
            ]
            raise AssertionError(f"no sample {name}{labels}; {name} has {named}")
        return found

    def labelled(self, name: str) -> list[dict[str, str]]:
        """The label sets `name` has samples for."""
        return [sample.labels for sample in self.samples if sample.name == name]


async def scrape(client: httpx.AsyncClient) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(TEXT_FORMAT)
    return Scrape(response.text)
