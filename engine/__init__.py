"""The multimodal engine: preprocessing, encoders, fusion, decoders, generation, backends."""
