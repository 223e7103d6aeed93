//! A compact, generic copy of a statement's parse tree, made by walking the
//! `pg_query` protobuf tree through its `serde::Serialize` implementation:
//! every node keeps its type name (`RangeVar`, `FuncCall`, ...) and its
//! fields that hold something (empty strings, `false`, zeros, empty lists
//! and absent nodes are left out). The rewriter's rules and edits read
//! this tree, which reaches every node of every statement kind without a
//! hand-written walker for each of Postgres's 270 node types.

use serde::ser::{self, Serialize};

/// One node or value of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Lite {
    /// A node: its type name and its non-empty fields, in declaration order.
    Node(&'static str, Vec<(&'static str, Lite)>),
    List(Vec<Lite>),
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Lite {
    /// The tree of `value` (a `pg_query` protobuf node or statement).
    pub fn of<T: Serialize>(value: &T) -> Lite {
        value.serialize(Builder).unwrap_or(Lite::List(Vec::new()))
    }

    /// The node's type name, if this is a node.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            Lite::Node(kind, _) => Some(kind),
            _ => None,
        }
    }

    /// Field `name` of a node.
    pub fn get(&self, name: &str) -> Option<&Lite> {
        match self {
            Lite::Node(_, fields) => fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Field `name` as a string ("" when absent: the tree leaves empty strings out).
    pub fn str(&self, name: &str) -> &str {
        match self.get(name) {
            Some(Lite::Str(s)) => s,
            _ => "",
        }
    }

    /// Field `name` as an integer (0 when absent).
    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Some(Lite::Int(i)) => *i,
            _ => 0,
        }
    }

    /// Field `name` as a boolean (false when absent).
    pub fn bool(&self, name: &str) -> bool {
        matches!(self.get(name), Some(Lite::Bool(true)))
    }

    /// Field `name` as a list (empty when absent).
    pub fn list(&self, name: &str) -> &[Lite] {
        match self.get(name) {
            Some(Lite::List(items)) => items,
            _ => &[],
        }
    }

    /// The node's `location` field: a byte offset in the text that was
    /// parsed, or `None` when the node has none (-1: the parser recorded
    /// none).
    pub fn location(&self) -> Option<usize> {
        match self.get("location") {
            Some(Lite::Int(i)) if *i >= 0 => Some(*i as usize),
            _ => None,
        }
    }

    /// The string of a `String` node (`sval`), or of an `A_Const` holding one.
    pub fn string_value(&self) -> Option<&str> {
        match self.kind()? {
            "String" => Some(self.str("sval")),
            "AConst" => match self.get("val")? {
                node @ Lite::Node("Sval", _) => Some(node.str("sval")),
                _ => None,
            },
            _ => None,
        }
    }

    /// The strings of a list of `String` nodes (a qualified name), or `None`
    /// when one of them is something else (`*`, an expression).
    pub fn names(items: &[Lite]) -> Option<Vec<&str>> {
        items
            .iter()
            .map(|n| (n.kind() == Some("String")).then(|| n.str("sval")))
            .collect()
    }

    /// Calls `visit` with every node of the tree, depth first, and the
    /// kinds of its ancestors (outermost first). Iterative: a deep tree
    /// costs heap, not stack.
    pub fn walk<'a>(&'a self, mut visit: impl FnMut(&'a Lite, &[&'static str])) {
        let mut path: Vec<&'static str> = Vec::new();
        // (value, how many node kinds are above it)
        let mut stack: Vec<(&'a Lite, usize)> = vec![(self, 0)];
        while let Some((value, depth)) = stack.pop() {
            path.truncate(depth);
            let below = match value {
                Lite::Node(kind, fields) => {
                    visit(value, &path);
                    path.push(kind);
                    for (_, v) in fields.iter().rev() {
                        stack.push((v, depth + 1));
                    }
                    continue;
                }
                Lite::List(items) => items,
                _ => continue,
            };
            for v in below.iter().rev() {
                stack.push((v, depth));
            }
        }
    }

    /// The smallest location in the subtree: where an expression's text
    /// starts (an operator node's own location is its operator's).
    pub fn start(&self) -> Option<usize> {
        let mut first: Option<usize> = None;
        self.walk(|node, _| {
            if let Some(at) = node.location() {
                first = Some(first.map_or(at, |f| f.min(at)));
            }
        });
        first
    }
}

/// The serializer that builds a [`Lite`] tree.
struct Builder;

/// Never raised: building a tree cannot fail.
#[derive(Debug)]
pub struct Never;

impl std::fmt::Display for Never {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("tree building failed")
    }
}

impl std::error::Error for Never {}

impl ser::Error for Never {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Never
    }
}

/// True for the values the tree leaves out.
fn is_empty(v: &Lite) -> bool {
    match v {
        Lite::Str(s) => s.is_empty(),
        Lite::Bool(b) => !b,
        Lite::List(items) => items.is_empty(),
        Lite::Int(_) | Lite::Float(_) | Lite::Node(..) => false,
    }
}

/// A node's fields as they are serialized.
struct Fields(&'static str, Vec<(&'static str, Lite)>);

/// A list's items as they are serialized.
struct Items(Vec<Lite>);

impl ser::SerializeStruct for Fields {
    type Ok = Lite;
    type Error = Never;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        let v = value.serialize(Builder)?;
        if !is_empty(&v) {
            self.1.push((key, v));
        }
        Ok(())
    }

    /// A `Node` wrapper (`Node { node: Some(RangeVar(...)) }`) is its
    /// content: the tree's nodes are the content's kinds.
    fn end(mut self) -> Result<Lite, Never> {
        if self.0 == "Node" {
            return Ok(match self.1.pop() {
                Some(("node", inner)) => inner,
                _ => Lite::List(Vec::new()),
            });
        }
        Ok(Lite::Node(self.0, self.1))
    }
}

impl ser::SerializeStructVariant for Fields {
    type Ok = Lite;
    type Error = Never;

    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Never> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }

    fn end(self) -> Result<Lite, Never> {
        Ok(Lite::Node(self.0, self.1))
    }
}

macro_rules! items {
    ($trait:ident, $method:ident) => {
        impl ser::$trait for Items {
            type Ok = Lite;
            type Error = Never;

            fn $method<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
                self.0.push(value.serialize(Builder)?);
                Ok(())
            }

            fn end(self) -> Result<Lite, Never> {
                Ok(Lite::List(self.0))
            }
        }
    };
}

items!(SerializeSeq, serialize_element);
items!(SerializeTuple, serialize_element);
items!(SerializeTupleStruct, serialize_field);
items!(SerializeTupleVariant, serialize_field);

impl ser::SerializeMap for Items {
    type Ok = Lite;
    type Error = Never;

    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Never> {
        self.0.push(key.serialize(Builder)?);
        Ok(())
    }

    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Never> {
        self.0.push(value.serialize(Builder)?);
        Ok(())
    }

    fn end(self) -> Result<Lite, Never> {
        Ok(Lite::List(self.0))
    }
}

impl ser::Serializer for Builder {
    type Ok = Lite;
    type Error = Never;
    type SerializeSeq = Items;
    type SerializeTuple = Items;
    type SerializeTupleStruct = Items;
    type SerializeTupleVariant = Items;
    type SerializeMap = Items;
    type SerializeStruct = Fields;
    type SerializeStructVariant = Fields;

    fn serialize_bool(self, v: bool) -> Result<Lite, Never> {
        Ok(Lite::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Lite, Never> {
        Ok(Lite::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Lite, Never> {
        Ok(Lite::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Lite, Never> {
        Ok(Lite::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Lite, Never> {
        Ok(Lite::Int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Lite, Never> {
        Ok(Lite::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Lite, Never> {
        Ok(Lite::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Lite, Never> {
        Ok(Lite::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Lite, Never> {
        Ok(Lite::Int(v as i64))
    }
    fn serialize_f32(self, v: f32) -> Result<Lite, Never> {
        Ok(Lite::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Lite, Never> {
        Ok(Lite::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Lite, Never> {
        Ok(Lite::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Lite, Never> {
        Ok(Lite::Str(v.to_string()))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Lite, Never> {
        Ok(Lite::List(Vec::new()))
    }
    fn serialize_none(self) -> Result<Lite, Never> {
        Ok(Lite::List(Vec::new()))
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<Lite, Never> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Lite, Never> {
        Ok(Lite::List(Vec::new()))
    }
    fn serialize_unit_struct(self, name: &'static str) -> Result<Lite, Never> {
        Ok(Lite::Node(name, Vec::new()))
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<Lite, Never> {
        Ok(Lite::Node(variant, Vec::new()))
    }
    /// `Node { node: Some(...) }` and the like pass straight through.
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<Lite, Never> {
        value.serialize(self)
    }
    /// A oneof variant (`node::Node::RangeVar(RangeVar)`) is its content:
    /// the content's own struct name is the node's kind.
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Lite, Never> {
        match value.serialize(self)? {
            Lite::Node(_, fields) => Ok(Lite::Node(variant, fields)),
            other => Ok(Lite::Node(variant, vec![("value", other)])),
        }
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Items, Never> {
        Ok(Items(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Items, Never> {
        Ok(Items(Vec::with_capacity(len)))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Items, Never> {
        Ok(Items(Vec::with_capacity(len)))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        len: usize,
    ) -> Result<Items, Never> {
        Ok(Items(Vec::with_capacity(len)))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Items, Never> {
        Ok(Items(Vec::new()))
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<Fields, Never> {
        Ok(Fields(name, Vec::new()))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Fields, Never> {
        Ok(Fields(variant, Vec::new()))
    }
}
