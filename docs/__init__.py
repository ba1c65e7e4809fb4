"""The guided tour (Markdown pages), its pictures (img/, drawn by figures/ from results/)
and the API reference (api/); mkdocs.yml builds them into a site."""
